"""Activation and attribution patching on CUDA, on the real model: against transformer_lens' own
one-forward-per-cell loop on the same GPU, and against the CPU run."""

import pytest
import torch
import transformer_lens.patching as tl_patching

from interp.metrics import logit_diff
from interp.patching import activation_patching, attribution_patching

TOLERANCE = 1e-3  # float32 on CUDA against transformer_lens on the same GPU; against the CPU, relative to the largest value
SWEEPS = {  # interp site -> (transformer_lens hook kind, its patch setter, its axes: the same order as ours)
    "resid_pre": ("resid_pre", tl_patching.layer_pos_patch_setter, ("layer", "pos")),
    "attn_head_out": ("z", tl_patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head")),
}
N_PROMPTS, N_TOKENS, SWAP = 2, 8, 4


def token_pairs(model, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clean prompts (BOS first) and corrupt copies with another token at position SWAP."""
    generator = torch.Generator().manual_seed(seed)
    n_words = len(model.tokenizer)
    clean = torch.randint(3, n_words, (N_PROMPTS, N_TOKENS), generator=generator)
    if model.tokenizer.bos_token_id is not None:
        clean[:, 0] = model.tokenizer.bos_token_id
    corrupt = clean.clone()
    corrupt[:, SWAP] = (clean[:, SWAP] + 1 + torch.randint(1, 1000, (N_PROMPTS,), generator=generator)) % n_words
    return clean, corrupt


@pytest.mark.parametrize("site", list(SWEEPS))
def test_cuda_patching_equals_transformer_lens_on_the_real_model(real_model_cuda, site):
    model = real_model_cuda
    clean, corrupt = token_pairs(model)
    metric = logit_diff(answer=clean[:, SWAP].tolist(), wrong=corrupt[:, SWAP].tolist())
    ours = activation_patching(model, clean, corrupt, metric, site=site, by_position=True, progress=False)
    kind, setter, axes = SWEEPS[site]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean.to("cuda"))
        expected = tl_patching.generic_activation_patch(model, corrupt.to("cuda"), clean_cache, lambda logits: metric(logits).mean(), setter, kind, index_axis_names=axes)
    assert ours.values.shape == expected.shape
    difference = (ours.values.cpu() - expected.cpu()).abs().max().item()
    assert difference <= TOLERANCE, f"{site}: max |interp - transformer_lens| on CUDA = {difference:.2e}"
    assert ours.fast_path, f"the fast path fell back on CUDA: {ours.fallback_reason}"


def test_cuda_patching_and_attribution_equal_the_cpu_run(real_model_cuda, real_model_cpu):
    clean, corrupt = token_pairs(real_model_cpu)
    metric = logit_diff(answer=clean[:, SWAP].tolist(), wrong=corrupt[:, SWAP].tolist())
    runs = {
        "activation_patching": lambda model: activation_patching(model, clean, corrupt, metric, site="resid_pre", progress=False),
        "attribution_patching": lambda model: attribution_patching(model, clean, corrupt, metric, site="resid_pre"),
    }
    for name, run in runs.items():
        gpu, cpu = run(real_model_cuda).values.cpu(), run(real_model_cpu).values.cpu()
        scale = max(1.0, cpu.abs().max().item())
        difference = (gpu - cpu).abs().max().item()
        assert difference <= TOLERANCE * scale, f"{name}: CUDA vs CPU max diff {difference:.2e} (values up to {scale:.2f})"
