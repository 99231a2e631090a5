"""Pruning scores on CUDA, on the real model: float32 scores from a bfloat16 model, close to the
float32 CPU scores; a float32 CUDA model gives the CPU's scores; pruning restores bit-exactly."""

import pytest
import torch

from interp.provenance import tensor_bytes
from interp.pruning import importance_scores, pruned, top_k_mask

PAIRS = [
    {"text": "How do I bake bread?", "response": " Mix flour, water and salt, knead, let it rise, then bake."},
    {"text": "What is the capital of France?", "response": " The capital of France is Paris."},
    {"text": "Write a haiku about the sea.", "response": " Waves fold into foam, the tide keeps its own counsel, gulls stitch sky to sand."},
    {"text": "2 + 2 =", "response": " 4"},
]
FP32_CUDA_VS_CPU = 1e-3  # relative to the largest score of each matrix
BF16_CORRELATION = 0.95  # bfloat16 forward/backward, float32 accumulation: scores still rank weights alike


def _flat(scores) -> dict[str, torch.Tensor]:
    return {key: scores[key].detach().float().cpu() for key in scores.keys}


@pytest.mark.parametrize("method", ["snip", "signed_snip", "wanda"])
def test_float32_cuda_scores_equal_the_cpu_scores(real_model_cuda, real_model_cpu, method):
    gpu = _flat(importance_scores(real_model_cuda, PAIRS, method=method, batch_size=2, progress=False))
    cpu = _flat(importance_scores(real_model_cpu, PAIRS, method=method, batch_size=2, progress=False))
    assert gpu.keys() == cpu.keys()
    for key in cpu:
        difference = (gpu[key] - cpu[key]).abs().max().item() / max(cpu[key].abs().max().item(), 1e-12)
        assert difference <= FP32_CUDA_VS_CPU, f"{method} {key}: CUDA vs CPU relative max diff {difference:.2e}"


@pytest.mark.parametrize("method", ["snip", "wanda"])
def test_bfloat16_cuda_model_accumulates_scores_in_float32(real_model_cuda_bf16, real_model_cpu, method):
    low = importance_scores(real_model_cuda_bf16, PAIRS, method=method, batch_size=2, progress=False)
    reference = _flat(importance_scores(real_model_cpu, PAIRS, method=method, batch_size=2, progress=False))
    for key in reference:
        assert low[key].dtype == torch.float32, f"{key}: scores of a bfloat16 model must be float32, got {low[key].dtype}"
        pair = torch.stack([low[key].float().cpu().flatten(), reference[key].flatten()])
        correlation = torch.corrcoef(pair)[0, 1].item()
        assert correlation > BF16_CORRELATION, f"{method} {key}: bfloat16 CUDA scores correlate {correlation:.3f} with float32 CPU scores"


def test_pruning_on_cuda_restores_every_weight_bit_exactly(real_model_cuda):
    model = real_model_cuda
    scores = importance_scores(model, PAIRS, method="wanda", batch_size=4, progress=False)
    mask = top_k_mask(scores, 0.01)
    before = {name: tensor_bytes(t) for name, t in model.original_model.state_dict(keep_vars=True).items()}
    with pruned(model, mask):
        changed = sum(tensor_bytes(t) != before[name] for name, t in model.original_model.state_dict(keep_vars=True).items())
        assert changed > 0, "pruning changed no weight"
    after = {name: tensor_bytes(t) for name, t in model.original_model.state_dict(keep_vars=True).items()}
    assert after == before, [name for name in before if after[name] != before[name]][:5]
