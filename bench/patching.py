"""Batched activation patching against transformer_lens' own patching loop, side by side in one run.

Model: a GPT-2-small-shaped random model (12 layers, d_model 768, 12 heads, vocab 50257), or
a named model (``--model smollm2-135m-instruct``); ``--prompts`` prompt pairs (default 8) of
16 tokens. Two corruptions: one token swapped mid-prompt (the usual IOI-style pair) and every
token after the first swapped (nothing can be skipped); ``--corruptions one`` runs only the first.
Prints, per sweep, interp's and transformer_lens' seconds, the ratio (target >= 5x) and the
max abs difference of the values (target <= 1e-4).

transformer_lens runs one full forward per cell, so its time is linear in the number of cells:
by default it runs a random sample of ``--tl-cells`` cells of each sweep where clean and corrupt
differ (the values are compared there), and its full-sweep time is that time scaled to every
cell. ``--full`` runs every cell instead.

    python bench/patching.py [--full] [--tl-cells 48] [--threads 1] [--model smollm2-135m-instruct] [--prompts 8] [--corruptions one]
"""

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import transformer_lens.patching as tl_patching

from interp.metrics import logit_diff
from interp.models import load_model
from interp.patching import activation_patching
from interp.testing import build_tiny_model

N_PROMPTS, N_TOKENS, SWAP_POSITION = 8, 16, 8
# interp site -> (transformer_lens hook kind, its patch setter, its axes: the same order as ours)
SWEEPS = {
    "resid_pre": ("resid_pre", tl_patching.layer_pos_patch_setter, ("layer", "pos")),
    "attn_head_out": ("z", tl_patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head")),
}


def build_model(root: Path):
    path = root / "gpt2-small-shaped"
    if not (path / "config.json").exists():
        build_tiny_model("gpt2", path, n_layers=12, d_model=768, n_heads=12, n_kv_heads=None, d_mlp=3072, n_ctx=1024, vocab_size=50257)
    return load_model(path, device="cpu")


def make_pairs(model, every_token: bool, n_prompts: int = N_PROMPTS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    n_words = len(model.tokenizer)
    clean = torch.randint(3, n_words, (n_prompts, N_TOKENS), generator=generator)
    clean[:, 0] = model.tokenizer.bos_token_id
    corrupt = clean.clone()
    swapped = slice(1, None) if every_token else slice(SWAP_POSITION, SWAP_POSITION + 1)
    corrupt[:, swapped] = (clean[:, swapped] - 3 + torch.randint(1, n_words - 3, clean[:, swapped].shape, generator=generator)) % (n_words - 3) + 3
    return clean, corrupt


def transformer_lens_sweep(model, site: str, clean, corrupt, metric, n_cells: int | None, seed: int = 0) -> tuple[float, torch.Tensor, pd.DataFrame]:
    """Seconds for the full sweep (measured, or scaled from a sample: one forward per cell whatever the cell), the values and their cells."""
    kind, setter, axes = SWEEPS[site]
    sizes = {"layer": model.cfg.n_layers, "pos": clean.shape[1], "head": model.cfg.n_heads}
    every = tl_patching.make_df_from_ranges([sizes[axis] for axis in axes], list(axes))
    # sample where the runs differ (from the first swapped position on): elsewhere both sides give the unpatched value
    first = int((clean != corrupt).any(dim=0).nonzero()[0])
    changed = every[every["pos"] >= first]
    cells = every if n_cells is None or n_cells >= len(changed) else changed.sample(n=n_cells, random_state=seed).reset_index(drop=True)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        start = time.perf_counter()
        values = tl_patching.generic_activation_patch(model, corrupt, clean_cache, lambda logits: metric(logits).mean(), setter, kind, index_df=cells)
        seconds = time.perf_counter() - start
    return seconds * len(every) / len(cells), values.cpu(), cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="run transformer_lens on every cell (slow on a CPU)")
    parser.add_argument("--tl-cells", type=int, default=48, help="cells per sweep transformer_lens runs when not --full")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "interp-bench", help="where the benchmark model is built once")
    parser.add_argument("--model", default=None, help="a named or local model (e.g. smollm2-135m-instruct) instead of the GPT-2-small-shaped random one")
    parser.add_argument("--prompts", type=int, default=N_PROMPTS, help="prompt pairs per sweep")
    parser.add_argument("--corruptions", choices=("both", "one"), default="both", help="'one': only the one-token swap (the every-token swap is the slow worst case)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args.root) if args.model is None else load_model(args.model, device="cpu")
    name = "GPT-2-small-shaped" if args.model is None else args.model
    print(f"model: {name} ({model.cfg.n_layers} layers, d_model {model.cfg.d_model}, {model.cfg.n_heads} heads, vocab {model.cfg.d_vocab}); {args.prompts} prompts x {N_TOKENS} tokens; torch threads {torch.get_num_threads()}")
    print(f"{'corruption':<14} {'sweep':<26} {'cells':>6} {'interp s':>9} {'TL s':>9} {'ratio':>7} {'max |diff|':>11}")
    for every_token in (False, True) if args.corruptions == "both" else (False,):
        clean, corrupt = make_pairs(model, every_token, args.prompts)
        metric = logit_diff(answer=clean[:, SWAP_POSITION], wrong=corrupt[:, SWAP_POSITION])  # IOI-style: the clean vs the corrupt name
        for site, (_, _, axes) in SWEEPS.items():
            activation_patching(model, clean[:1, :4], corrupt[:1, :4], metric=lambda logits: logits[:, -1, 0], site=site, progress=False)  # warm-up
            start = time.perf_counter()
            ours = activation_patching(model, clean, corrupt, metric, site=site, by_position=True, progress=False)
            ours_seconds = time.perf_counter() - start
            tl_seconds, tl_values, cells = transformer_lens_sweep(model, site, clean, corrupt, metric, None if args.full else args.tl_cells)
            index = tuple(torch.tensor(cells[axis].to_numpy()) for axis in axes)
            difference = (ours.values[index] - tl_values).abs().max().item()
            moved = int(((tl_values - ours.corrupt_metric).abs() > 1e-6).sum())
            measured = f"compared on {len(cells)} cells ({moved} move the metric)" + ("" if args.full else ", TL time scaled from them")
            measured += "; fast path" if ours.fast_path else f"; FELL BACK to full forwards: {ours.fallback_reason}"
            label = "one token" if not every_token else "every token"
            print(f"{label:<14} {site + ' by position':<26} {ours.values.numel():>6} {ours_seconds:>9.2f} {tl_seconds:>9.2f} {tl_seconds / ours_seconds:>6.1f}x {difference:>11.2e}  {measured}")


if __name__ == "__main__":
    main()
