"""Training a TopK sparse autoencoder on a real model's middle layer: interp (cache the site once, train from the
store) against sparsify's own trainer (which runs the model on every batch), on the same token rows, side by side
in one process, and both against the FLOP floor.

Model: SmolLM2-135M-Instruct (``make models``), site ``blocks.15.hook_resid_post`` (sparsify: the output of
``layers.15``). Rows: the running Python's documentation (``interp.corpora``), concatenated and cut into pieces of 128
tokens (each with the model's BOS, which neither trainer trains on). Dictionary: 8 x 576 = 4,608 latents, k = 32,
batches of 1,024 tokens (8 pieces), Adam at sparsify's default learning rate, AuxK 1/32, one pass.

- **interp**: ``cache_activations(positions="all")`` (the forward stops after layer 15) once, then
  ``train_dictionary(store, ...)``; timed apart, so that a second pass or a second dictionary on the same site
  costs only the training.
- **sparsify**: ``sparsify.Trainer`` on the Hugging Face model and a ``MemmapDataset`` of the same pieces: the
  whole model (its 30 layers and the 49k-token unembedding) runs on every batch, once per pass.
- **FLOP floor**: the forward to layer 15 (2 x parameters of the embedding-free layers 0..15 per token) plus
  the SAE step (the dense encoder forward, 2 x d x d_sae per token; the k-sparse decoder forward and backward and
  the encoder's k-sparse backward, 10 x k x d), at the best fp32 matmul rate measured in the same process
  (1024- and 2048-square).

Printed per size: seconds and tokens/s of each stage; interp over sparsify for one pass and for E passes (or E
dictionaries on the site); each one's time over the floor; and how the ratio grows with the tokens.

    python bench/dictionaries_sparsify.py [--tokens 100000 300000] [--passes 4] [--threads 2]
"""

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cache import matmul_rate

from interp.corpora import python_documentation
from interp.data import PromptSet
from interp.dictionaries import train_dictionary
from interp.model import load_model
from interp.model.registry import resolve_model
from interp.store import cache_activations

LAYER, CHUNK, EXPANSION, K, PIECES_PER_BATCH = 15, 128, 8, 32, 8
SITE = f"blocks.{LAYER}.hook_resid_post"


def token_pieces(tokenizer, n_tokens: int) -> np.ndarray:
    """``[piece, CHUNK]`` token ids: BOS then CHUNK - 1 tokens of the docstrings, enough pieces for ``n_tokens``."""
    ids = tokenizer.encode("\n\n".join(python_documentation()), add_special_tokens=False)
    step = CHUNK - 1
    n_pieces = min(len(ids) // step, -(-n_tokens // step))
    body = np.array(ids[: n_pieces * step], dtype=np.int64).reshape(n_pieces, step)
    return np.concatenate([np.full((n_pieces, 1), tokenizer.bos_token_id), body], axis=1)


def interp_seconds(model, pieces: np.ndarray, root: Path) -> tuple[float, float]:
    """(caching, training) seconds of interp on ``pieces``."""
    tokenizer = model.tokenizer
    texts = [tokenizer.decode(row[1:].tolist()) for row in pieces]
    start = time.perf_counter()
    store = cache_activations(model, PromptSet.from_texts(texts), hooks=[SITE], positions="all",
                              out=root / "store", batch_size=PIECES_PER_BATCH, shard_size=256, progress=False)  # fmt: skip
    cached = time.perf_counter() - start
    n_rows = int(store.lengths.sum()) - store.n_prompts
    batch = PIECES_PER_BATCH * (CHUNK - 1)
    start = time.perf_counter()
    train_dictionary(store, SITE, root / "sae", expansion=EXPANSION, k=K, batch_size=batch,
                     max_tokens=(n_rows // batch) * batch, checkpoint_every=100, progress=False)  # fmt: skip
    return cached, time.perf_counter() - start


def sparsify_seconds(hf_model, pieces: np.ndarray, root: Path, bos: int) -> float:
    """Seconds of ``sparsify.Trainer.fit`` over ``pieces`` (one pass), its prints swallowed."""
    from sparsify import SaeConfig, Trainer, TrainConfig
    from sparsify.data import MemmapDataset

    path = root / "tokens.u16"
    pieces.astype(np.uint16).tofile(path)
    dataset = MemmapDataset(str(path), CHUNK)
    config = TrainConfig(SaeConfig(expansion_factor=EXPANSION, k=K), batch_size=PIECES_PER_BATCH, optimizer="adam",
                         auxk_alpha=1 / 32, exclude_tokens=[bos], hookpoints=[f"layers.{LAYER}"], log_to_wandb=False,
                         save_every=10**9, save_dir=str(root / "sparsify"))  # fmt: skip
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer = Trainer(config, dataset, hf_model)
        trainer.fit()
    return time.perf_counter() - start


def floor_seconds(hf_model, n_tokens: int, rate: float) -> tuple[float, float]:
    """(forward to the site, SAE step) FLOP-floor seconds for ``n_tokens``."""
    layers = hf_model.model.layers[: LAYER + 1]
    forward = 2 * sum(p.numel() for p in layers.parameters() if p.ndim == 2) * n_tokens
    d = hf_model.config.hidden_size
    d_sae = EXPANSION * d
    # the dense encoder forward; the k-sparse decoder forward and backward and the encoder's k-sparse backward
    # (sparsify's TopK backward touches only the chosen latents' rows)
    sae = (2 * d * d_sae + 10 * K * d) * n_tokens
    return forward / rate, sae / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--passes", type=int, default=4, help="passes (or dictionaries) the store is reused for")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model("smollm2-135m-instruct", device="cpu")
    from transformers import AutoModelForCausalLM

    hf_model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m-instruct")[0], dtype=torch.float32)
    rate = max(matmul_rate(), matmul_rate(2048))  # the larger size is nearer the batched matmuls of both jobs
    print(f"SmolLM2-135M-Instruct {SITE}; {EXPANSION * model.cfg.d_model} latents, k {K}, batches of "
          f"{PIECES_PER_BATCH} x {CHUNK} tokens; threads {torch.get_num_threads()}, fp32 matmul {rate / 1e9:.0f} GFLOP/s")  # fmt: skip
    ratios = []
    for n_tokens in args.tokens:
        pieces = token_pieces(model.tokenizer, n_tokens)
        tokens = pieces.shape[0] * (CHUNK - 1)  # the rows trained on: every piece's tokens but its BOS
        with tempfile.TemporaryDirectory() as tmp:
            cached, trained = interp_seconds(model, pieces, Path(tmp))
            theirs = sparsify_seconds(hf_model, pieces, Path(tmp), model.tokenizer.bos_token_id)
        forward_floor, sae_floor = floor_seconds(hf_model, tokens, rate)
        ours = cached + trained
        ratios.append(theirs / ours)
        print(f"\n{tokens:,} tokens ({pieces.shape[0]} pieces):")
        print(f"  interp cache (to layer {LAYER}) : {cached:6.1f} s  {tokens / cached:7.0f} tokens/s  "
              f"({cached / forward_floor:.1f}x its floor)")
        print(f"  interp train from the store : {trained:6.1f} s  {tokens / trained:7.0f} tokens/s  "
              f"({trained / sae_floor:.1f}x its floor)")
        print(f"  sparsify Trainer, one pass  : {theirs:6.1f} s  {tokens / theirs:7.0f} tokens/s  "
              f"({theirs / (forward_floor + sae_floor):.1f}x the floor of forward + SAE)")
        print(f"  one pass   : interp {ours:.1f} s vs sparsify {theirs:.1f} s: {theirs / ours:.2f}x")
        passes = args.passes
        print(f"  {passes} passes : interp {cached + passes * trained:.1f} s vs sparsify {passes * theirs:.1f} s: "
              f"{passes * theirs / (cached + passes * trained):.2f}x")  # fmt: skip
    if len(ratios) > 1:
        print("\none pass, as the work grows: " + ", ".join(f"{n:,} tokens {r:.2f}x" for n, r in zip(args.tokens, ratios)))


if __name__ == "__main__":
    main()
