"""Caching on CUDA: a bfloat16 model on the GPU, activations stored as float32, against the same
batch through ``run_with_cache`` and against the float32 CPU store; and two ranks on two GPUs
(torchrun, NCCL) against one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from interp.store import ActivationStore, cache_activations

REPOSITORY = Path(__file__).resolve().parents[2]
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "2 + 2 =",
    "When Mary and John went to the store, John gave a drink to",
    "How do I bake bread?",
    "The quick brown fox",
]
BF16_VS_FP32 = 0.05  # relative error of the bfloat16 model's residual stream against float32 (8 mantissa bits, 30 layers)


def test_bfloat16_model_on_cuda_stores_float32_rows_equal_to_run_with_cache(real_model_cuda_bf16, tmp_path):
    from interp.data import pad_batch, pad_token_id, tokenize_prompts

    model = real_model_cuda_bf16
    store = cache_activations(model, PROMPTS, hooks=["resid_post", "z"], positions="last", out=tmp_path / "s", batch_size=len(PROMPTS), dtype="float32", progress=False)
    assert store.manifest["dtype"] == "float32"
    batch = pad_batch(tokenize_prompts(model, PROMPTS), pad_token_id(model))
    with torch.inference_mode():
        _, cache = model.run_with_cache(batch.tokens.to("cuda"), attention_mask=batch.attention_mask.to("cuda"))
    rows = torch.arange(len(PROMPTS))
    for name in store.hooks:
        stored = store[name]
        assert stored.dtype == torch.float32 and stored.device.type == "cpu", name
        expected = cache[name][rows.to("cuda"), (batch.lengths - 1).to("cuda")].float().cpu()
        assert torch.equal(stored, expected), f"{name}: the float32 store is not the bfloat16 activations widened (max diff {(stored - expected).abs().max():.2e})"


def test_cuda_bfloat16_store_is_close_to_the_cpu_float32_store(real_model_cuda_bf16, real_model_cpu, tmp_path):
    gpu = cache_activations(real_model_cuda_bf16, PROMPTS, hooks=["resid_post"], out=tmp_path / "gpu", batch_size=3, dtype="float32", progress=False)
    cpu = cache_activations(real_model_cpu, PROMPTS, hooks=["resid_post"], out=tmp_path / "cpu", batch_size=3, progress=False)
    for name in cpu.hooks:
        error = ((gpu[name] - cpu[name]).norm(dim=-1) / cpu[name].norm(dim=-1)).max().item()
        assert error <= BF16_VS_FP32, f"{name}: bfloat16-on-CUDA rows differ from float32-on-CPU rows by {error:.3f} (relative), over {BF16_VS_FP32}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="two ranks with NCCL need two CUDA devices")
def test_two_ranks_on_two_gpus_write_the_store_one_gpu_writes(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"{p}\n" for p in PROMPTS * 4), encoding="utf-8")
    flags = ["--model", "smollm2-135m-instruct", "--dtype", "bfloat16", "--store-dtype", "float32", "--prompts", str(prompts),
             "--hooks", "resid_post", "--batch-size", "4", "--shard-size", "4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)}
    single = subprocess.run([sys.executable, "-m", "interp", "cache", *flags, "--device", "cuda:0", "--out", str(tmp_path / "one")],
                            cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    ranks = subprocess.run([*launch, "-m", "interp", "cache", *flags, "--out", str(tmp_path / "two")], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=600)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    one, two = ActivationStore.open(tmp_path / "one"), ActivationStore.open(tmp_path / "two", verify=True)
    for name in one.hooks:  # the same kernels on the same kind of GPU, the same batches: the same bits
        assert torch.equal(one[name], two[name]), f"{name}: max diff {(one[name] - two[name]).abs().max():.2e}"
    timing = {"created", "finished"}
    assert {k: v for k, v in one.manifest.items() if k not in timing} == {k: v for k, v in two.manifest.items() if k not in timing}
