"""Rollout throughput with a shared prefix against one ``generate`` call per rollout, side by side.

Model: a random Llama-shaped model (default 4 layers, d_model 256, context 1024) with a long
chain-of-thought prefix (default ~384 tokens), N rollouts of up to 32 new tokens each.
Prints, for the same prefix, seeds and settings:
  shared prefix   = interp.resampling.LocalBackend.generate: the prefix is encoded once, its
                    KV cache repeated for the N samples, one batched generate call
  one per rollout = N separate Hugging Face generate calls on the same prefix
  throughput ratio = (rollouts/s shared) / (rollouts/s one per rollout)          target >= 3

    python bench/resampling.py [--n 16] [--prefix-tokens 384] [--new-tokens 32] [--repeats 3]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from interp.models import load_model
from interp.resampling import LocalBackend
from interp.testing import build_tiny_model

WORDS = "the quick brown fox jumps over lazy dog . a cat sat on mat and looked at bird , how do i bake bread ? the answer is 42".split()


def make_prefix(backend: LocalBackend, n_tokens: int, seed: int = 0) -> str:
    generator = torch.Generator().manual_seed(seed)
    words = []
    while backend.count_tokens(" ".join(words)) < n_tokens:
        words += [WORDS[i] for i in torch.randint(len(WORDS), (16,), generator=generator).tolist()]
    return " ".join(words)


def shared_prefix_seconds(backend: LocalBackend, context: str, n: int, new_tokens: int) -> tuple[float, int]:
    start = time.perf_counter()
    texts = backend.generate(context, n, temperature=0.6, top_p=0.95, max_new_tokens=new_tokens, seed=0)
    return time.perf_counter() - start, len(texts)


def one_per_rollout_seconds(backend: LocalBackend, context: str, n: int, new_tokens: int) -> tuple[float, int]:
    model, tokenizer = backend.model, backend.tokenizer
    ids = torch.tensor([backend.encode(context)])
    mask = torch.ones_like(ids)
    start = time.perf_counter()
    texts = []
    with torch.inference_mode():
        for r in range(n):
            torch.manual_seed(r)
            out = model.generate(ids, attention_mask=mask, do_sample=True, temperature=0.6, top_p=0.95,
                                 max_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id)
            texts.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return time.perf_counter() - start, len(texts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="rollouts per prefix")
    parser.add_argument("--prefix-tokens", type=int, default=384, help="length of the shared prefix")
    parser.add_argument("--new-tokens", type=int, default=32, help="max new tokens per rollout")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best of each is kept")
    parser.add_argument("--model-dir", type=Path, default=None, help="reuse a built model directory")
    args = parser.parse_args(argv)

    root = args.model_dir or Path(tempfile.mkdtemp()) / "llama-bench"
    if not (root / "config.json").exists():
        build_tiny_model("llama", root, n_layers=args.layers, d_model=args.d_model, n_heads=8, n_kv_heads=4, n_ctx=1024)
    backend = LocalBackend(load_model(root, device="cpu"))
    context = make_prefix(backend, args.prefix_tokens)
    n_prefix = backend.count_tokens(context)

    shared_prefix_seconds(backend, context, 2, 2)  # warm-up
    one_per_rollout_seconds(backend, context, 1, 2)
    shared, single = float("inf"), float("inf")
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        shared = min(shared, shared_prefix_seconds(backend, context, args.n, args.new_tokens)[0])
        single = min(single, one_per_rollout_seconds(backend, context, args.n, args.new_tokens)[0])

    print(f"model: llama {args.layers} layers, d_model {args.d_model}; prefix {n_prefix} tokens; "
          f"{args.n} rollouts x up to {args.new_tokens} new tokens; torch threads {torch.get_num_threads()}")
    print(f"{'shared prefix (LocalBackend)':<34} {shared:8.2f} s   {args.n / shared:8.2f} rollouts/s")
    print(f"{'one generate call per rollout':<34} {single:8.2f} s   {args.n / single:8.2f} rollouts/s")
    ratio = single / shared
    print(f"throughput ratio (shared / one per rollout): {ratio:.2f}x   target >= 3x   {'OK' if ratio >= 3 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
