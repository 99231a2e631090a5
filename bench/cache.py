"""Caching throughput and memory against the bare forward pass, side by side in one run.

Model: a GPT-2-small-shaped random model (12 layers, d_model 768, 12 heads, vocab 50257).
Prints:
  throughput ratio = (tokens/s while caching resid_post of every layer at the last position)
                     / (tokens/s of the bare forward pass over the same batches)   target >= 0.85
  memory growth    = peak-RSS increase caching 10N prompts / caching N prompts      target < 1.10
Each memory measurement runs in a fresh child process so peaks do not mix.
Caching stops each forward right after the last hook it reads, so with resid_post it skips the
final norm and the unembedding (768 x 50257), which the bare forward computes: a ratio above 1.

    python bench/cache.py [--prompts 256] [--tokens 64] [--batch-size 16]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from interp.data import PromptSet, iter_batches, pad_token_id, tokenize_prompts
from interp.models import load_model
from interp.store import cache_activations
from interp.testing import build_tiny_model

WORDS = "the quick brown fox jumps over lazy dog a cat sat on mat and looked at bird how do i bake bread".split()


def make_prompts(n: int, n_words: int, seed: int = 0) -> PromptSet:
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(WORDS), (n, n_words), generator=generator)
    return PromptSet.from_texts([" ".join(WORDS[i] for i in row) for row in picks.tolist()])


def build_model(root: Path):
    path = root / "gpt2-small-shaped"
    if not (path / "config.json").exists():
        build_tiny_model("gpt2", path, n_layers=12, d_model=768, n_heads=12, n_kv_heads=None, d_mlp=3072, n_ctx=1024, vocab_size=50257)
    return load_model(path, device="cpu")


def bare_forward_seconds(model, prompts: PromptSet, batch_size: int) -> float:
    token_lists = tokenize_prompts(model, prompts)
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in iter_batches(token_lists, batch_size, pad_token_id(model)):
            model(batch.tokens, attention_mask=batch.attention_mask)
    return time.perf_counter() - start


def cache_seconds(model, prompts: PromptSet, batch_size: int, out: Path) -> float:
    start = time.perf_counter()
    cache_activations(model, prompts, hooks=["resid_post"], positions="last", out=out, batch_size=batch_size, progress=False)
    return time.perf_counter() - start


def child_peak_memory(root: Path, n_prompts: int, n_words: int, batch_size: int) -> None:
    model = build_model(root)
    prompts = make_prompts(n_prompts, n_words, seed=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        cache_activations(model, prompts, hooks=["resid_post"], positions="last", out=Path(tmp) / "s", batch_size=batch_size, progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_kb": after, "baseline_rss_kb": before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=64, help="words per prompt (about one token each)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child-memory", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = args.root or Path(tempfile.gettempdir()) / "interp-bench"
    root.mkdir(parents=True, exist_ok=True)
    if args.child_memory:
        child_peak_memory(root, args.child_memory, args.tokens, args.batch_size)
        return

    model = build_model(root)
    prompts = make_prompts(args.prompts, args.tokens)
    n_tokens = sum(len(ids) for ids in tokenize_prompts(model, prompts))
    bare_forward_seconds(model, prompts.select(range(args.batch_size)), args.batch_size)  # warm-up
    bare, cached = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # interleaved, so drift on a noisy machine hits both alike
            bare.append(bare_forward_seconds(model, prompts, args.batch_size))
            cached.append(cache_seconds(model, prompts, args.batch_size, Path(tmp) / f"s{repeat}"))
    bare_tps, cache_tps = n_tokens / min(bare), n_tokens / min(cached)
    print(f"model: GPT-2-small shape (12 layers, d_model 768), {args.prompts} prompts x ~{args.tokens} tokens, batch {args.batch_size}, threads {torch.get_num_threads()}")
    print(f"bare forward      : {bare_tps:10.0f} tokens/s (best of {args.repeats})")
    print(f"cache resid_post  : {cache_tps:10.0f} tokens/s (best of {args.repeats}; 12 layers, last position, written to disk)")
    print(f"throughput ratio  : {cache_tps / bare_tps:.2f}x   (target >= 0.85)")

    peaks = {}
    for n in (args.prompts // 4, args.prompts * 10 // 4):
        result = subprocess.run(
            [sys.executable, __file__, "--child-memory", str(n), "--tokens", str(args.tokens), "--batch-size", str(args.batch_size), "--root", str(root)],
            capture_output=True, text=True, check=True, env={**os.environ},
        )
        peaks[n] = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_kb"]
    small, large = sorted(peaks)
    print(f"peak RSS, {small:5d} prompts: {peaks[small] / 1024:8.1f} MiB")
    print(f"peak RSS, {large:5d} prompts: {peaks[large] / 1024:8.1f} MiB")
    print(f"memory growth     : {peaks[large] / peaks[small]:.3f}x for 10x the prompts   (target < 1.10)")


if __name__ == "__main__":
    main()
