"""Training a TopK sparse autoencoder: interp's train_dictionary from a store on disk against a plain PyTorch TopK loop
on the same rows held in memory, side by side in one process, and both against the FLOP floor.

Rows: ``resid_post`` of one layer of a random GPT-2-small-width model (d_model 768, 2 layers: caching is cheap, the
width is realistic), every position of prompts of ~64 words, cached once per size into a store.
Dictionary: 8 x 768 = 6,144 latents, k = 32, batches of 1,024 tokens, one pass.

- **interp**: ``train_dictionary(store, ...)``: rows streamed from the memory-mapped shards (each tensor's hash
  checked on first read), shuffled across shards, sparsify's ``SparseCoder`` (its TopK backward touches only the
  k chosen latents), AuxK, decoder renormalised, checkpoints every 100 steps.
- **plain loop**: what a user writes: the rows in one tensor, a random permutation, a dense encoder, ``topk``,
  the codes scattered to a dense matrix, a dense decoder, MSE, Adam, decoder rows renormalised.
- **FLOP floor**: the encoder's matmul forward (2 x d_in x d_sae per token) plus the k-sparse decoder and its
  backward, at the fp32 matmul rate measured in the same process.

Printed per size: tokens/s of each, interp / plain loop, and each one's time over the floor.
sparsify's own trainer (which runs the model on every batch) is timed against interp by
``bench/dictionaries_sparsify.py`` on a real model.

    python bench/dictionaries.py [--tokens 100000 300000] [--threads 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from cache import matmul_rate

from interp.data import PromptSet
from interp.dictionaries import train_dictionary
from interp.model import load_model
from interp.store import cache_activations
from interp.testing import build_tiny_model

WORDS = "the quick brown fox jumps over lazy dog a cat sat on mat and looked at bird how do i bake bread".split()
D_MODEL, EXPANSION, K, BATCH = 768, 8, 32, 1024
SITE = "blocks.1.hook_resid_post"


def make_store(root: Path, n_tokens: int):
    model_dir = root / "gpt2-width"
    if not (model_dir / "config.json").exists():
        build_tiny_model("gpt2", model_dir, n_layers=2, d_model=D_MODEL, n_heads=12, n_kv_heads=None, d_mlp=3072, n_ctx=256)
    model = load_model(str(model_dir), device="cpu")
    generator = torch.Generator().manual_seed(0)
    n_prompts = n_tokens // 64 + 1
    texts = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (63,), generator=generator).tolist()) for _ in range(n_prompts)]
    out = root / f"store_{n_tokens}"
    return cache_activations(model, PromptSet.from_texts(texts), hooks=["resid_post"], positions="all", out=out,
                             batch_size=32, shard_size=256, resume=True, progress=False, max_tokens=n_tokens)


def plain_loop(rows: torch.Tensor, d_sae: int, steps: int) -> float:
    """Seconds for ``steps`` batches of the loop a user writes (the rows already in memory)."""
    torch.manual_seed(0)
    d = rows.shape[1]
    encoder, decoder = torch.nn.Linear(d, d_sae), torch.nn.Linear(d_sae, d)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-4)
    order = torch.randperm(rows.shape[0])
    start = time.perf_counter()
    for step in range(steps):
        x = rows[order[step * BATCH : (step + 1) * BATCH]]
        pre = torch.relu(encoder(x - decoder.bias))
        values, indices = pre.topk(K, dim=-1)
        codes = torch.zeros_like(pre).scatter_(-1, indices, values)
        loss = ((decoder(codes) - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            decoder.weight /= decoder.weight.norm(dim=0, keepdim=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.gettempdir()) / "interp-bench-dictionaries"
    d_sae = EXPANSION * D_MODEL
    rate = matmul_rate()
    print(f"d_in {D_MODEL}, {d_sae} latents, k {K}, batches of {BATCH}; threads {torch.get_num_threads()}, "
          f"fp32 matmul {rate / 1e9:.0f} GFLOP/s")
    ratios = []
    for n_tokens in args.tokens:
        store = make_store(root, n_tokens)
        acts = store[SITE]  # [prompt, pos, d], read once
        rows = torch.cat([acts[p, 1 : int(store.lengths[p])] for p in range(store.n_prompts)]).float()
        del acts
        steps = rows.shape[0] // BATCH
        out = root / f"sae_{n_tokens}_{time.time_ns()}"
        start = time.perf_counter()
        train_dictionary(store, SITE, out, d_sae=d_sae, k=K, batch_size=BATCH, max_tokens=steps * BATCH,
                         checkpoint_every=100, progress=False, exclude_special=False)
        interp_seconds = time.perf_counter() - start
        plain_seconds = plain_loop(rows, d_sae, steps)
        tokens = steps * BATCH
        floor = tokens * (2 * D_MODEL * d_sae + 3 * 2 * K * D_MODEL + 2 * K * D_MODEL) / rate
        ratio = plain_seconds / interp_seconds
        ratios.append(ratio)
        print(f"\n{tokens:,} tokens ({steps} steps):")
        print(f"  interp, from the store : {interp_seconds:6.1f} s  {tokens / interp_seconds:8.0f} tokens/s  "
              f"({interp_seconds / floor:.1f}x the floor)")
        print(f"  plain PyTorch loop     : {plain_seconds:6.1f} s  {tokens / plain_seconds:8.0f} tokens/s  "
              f"({plain_seconds / floor:.1f}x the floor)")
        print(f"  interp vs plain loop   : {ratio:.2f}x   (floor {floor:.1f} s)")
    if len(ratios) > 1:
        print("\nas the work grows: " + ", ".join(f"{n:,} tokens {r:.2f}x" for n, r in zip(args.tokens, ratios)))


if __name__ == "__main__":
    main()
