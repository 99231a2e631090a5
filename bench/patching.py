"""Batched activation patching against a hand-batched hook loop and transformer_lens' patching loop, side by side in one run.

Model: a GPT-2-small-shaped random model (12 layers, d_model 768, 12 heads, vocab 50257), or a
named model (``--model smollm2-135m-instruct``). ``--prompts 2 8``: the prompt pairs per sweep,
one block of sweeps per size, then how the speed-ups grow with the work.

Random pairs (default): 16 tokens, two corruptions: one token swapped mid-prompt (the usual
IOI-style pair) and every token after the first swapped (nothing can be skipped; ``--corruptions
one`` runs only the first); sweeps resid_pre and attn_head_out by position, denoising.
``--ioi``: IOI prompts (``interp.mechanisms.ioi``, ABC corruption; default model smollm2-135m-instruct) and
the finding's head sweep: attn_head_out per head over every position, noising, logit difference.

Three ways to get the same values:
- interp: ``activation_patching`` (the batched engine);
- hand-batched: the loop a competent user writes: one cache of the source run, then per group of
  ``--hand-rows // prompts`` cells one forward of the target batch stacked once per cell (rows
  ``(cell prompt)``), one hook per layer writing each cell's source activation into its own rows
  (``model.run_with_hooks``, unembedding the last position only: ``logits_to_keep=1``, as the
  metric reads nothing else). It runs only cells whose source and target activations differ (as
  interp does), so neither of these savings counts in interp's favour;
- transformer_lens: ``generic_activation_patch``, one full forward per cell, every cell.
The hand loop and transformer_lens run the same random sample of ``--tl-cells`` cells (rounded up
to whole hand forwards) where the runs differ; their values are compared with interp's there
(max abs difference, target <= 1e-4), and their full-sweep seconds are scaled from the sample
(a full forward costs the same whatever the cell). ``--full`` runs every cell.

Work: the FLOP floor is what a patched cell cannot avoid: for a cell at layer l whose patch starts
at position p, the blocks l.. at positions p.. (2 x decoder linear parameters per layer and
token) plus the unembedding at the metric's one position, per prompt; cells that change nothing
cost 0. ``executed``: the matmul FLOPs interp ran (torch's FlopCounterMode, a separate untimed
run; ``--no-flop-count`` skips it), its capture runs and self-checks included. ``floor s``: the
floor at the rate of a 1024x1024 fp32 matmul timed in this process (the best of before and after
each repeat of a sweep: the machine may be shared).

    python bench/patching.py [--prompts 2 8] [--model smollm2-135m-instruct] [--ioi] [--full] [--tl-cells 48] [--hand-rows 128] [--threads 1] [--corruptions one]
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import einops
import pandas as pd
import torch
import transformer_lens.patching as tl_patching
from torch.utils.flop_counter import FlopCounterMode

from interp.mechanisms.ioi import ioi_prompts
from interp.metrics import logit_diff, reduce_metric
from interp.model import load_model
from interp.patching import activation_patching
from interp.sites import site_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache import DEFAULT_MODEL, matmul_rate, model_directory  # noqa: E402  (the benches' shared model builder and matmul timer)

N_PROMPTS, N_TOKENS, SWAP_POSITION = (2, 8), 16, 8
IOI_MODEL = "smollm2-135m-instruct"
# (interp site, by_position) -> (transformer_lens hook kind, its patch setter, its axes: the same order as ours)
SWEEPS = {
    ("resid_pre", True): ("resid_pre", tl_patching.layer_pos_patch_setter, ("layer", "pos")),
    ("attn_head_out", True): ("z", tl_patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head")),
    ("attn_head_out", False): ("z", tl_patching.layer_head_vector_patch_setter, ("layer", "head")),
}


def make_pairs(model, every_token: bool, n_prompts: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    n_words = len(model.tokenizer)
    clean = torch.randint(3, n_words, (n_prompts, N_TOKENS), generator=generator)
    clean[:, 0] = model.tokenizer.bos_token_id
    corrupt = clean.clone()
    swapped = slice(1, None) if every_token else slice(SWAP_POSITION, SWAP_POSITION + 1)
    corrupt[:, swapped] = (clean[:, swapped] - 3 + torch.randint(1, n_words - 3, clean[:, swapped].shape, generator=generator)) % (n_words - 3) + 3
    return clean, corrupt


def site_caches(model, kind: str, tokens: torch.Tensor) -> list[torch.Tensor]:
    """The activation ``kind`` of every layer on ``tokens``."""
    names = {site_name(kind, layer): layer for layer in range(model.cfg.n_layers)}
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return [cache[name] for name in names]


def changed_cells(axes: tuple[str, ...], source: list[torch.Tensor], target: list[torch.Tensor]) -> pd.DataFrame:
    """Every cell whose source and target activations differ, with ``start``: the first position its patch changes."""
    rows = []
    for layer, (s, t) in enumerate(zip(source, target)):
        differ = (s != t).flatten(3).any(dim=3) if s.ndim == 4 else (s != t).any(dim=2)  # [prompt, pos(, head)]
        differ = differ.any(dim=0)  # [pos(, head)]
        if "head" not in axes:
            rows += [{"layer": layer, "pos": pos, "start": pos} for pos in differ.nonzero().flatten().tolist()]
        elif "pos" in axes:
            rows += [{"layer": layer, "pos": pos, "head": head, "start": pos} for pos, head in differ.nonzero().tolist()]
        else:
            for head in range(differ.shape[1]):
                where = differ[:, head].nonzero().flatten()
                if where.numel():
                    rows.append({"layer": layer, "head": head, "start": int(where[0])})
    return pd.DataFrame(rows, columns=[*axes, "start"])


def floor_flops(model, changed: pd.DataFrame, n_prompts: int, n_pos: int) -> float:
    """FLOPs no patching method can avoid: per changed cell, blocks layer.. at positions start.., plus the unembedding at the last position."""
    per_layer = sum(p.numel() for p in dict(model.blocks[0].named_parameters()).values() if p.ndim == 2)
    unembed = int(model.cfg.d_model) * int(model.cfg.d_vocab)
    n_layers = int(model.cfg.n_layers)
    tokens = ((n_layers - changed["layer"]) * (n_pos - changed["start"])).sum()
    return 2.0 * n_prompts * (float(tokens) * per_layer + len(changed) * unembed)


def transformer_lens_sweep(model, kind: str, setter, source_tokens, target_tokens, metric, cells: pd.DataFrame) -> tuple[float, torch.Tensor]:
    """Seconds and values of transformer_lens' loop (one full forward per cell) over ``cells``."""
    with torch.no_grad():
        _, source_cache = model.run_with_cache(source_tokens)
        started = time.perf_counter()
        values = tl_patching.generic_activation_patch(model, target_tokens, source_cache, lambda logits: metric(logits).mean(), setter, kind, index_df=cells)
    return time.perf_counter() - started, values.cpu()


def _splice(source: torch.Tensor, members: list[tuple[int, dict]], n_cells: int):
    """A hook writing each member cell's source activation into its own rows ``(cell prompt)``."""

    def hook(act: torch.Tensor, hook) -> torch.Tensor:
        view = einops.rearrange(act, "(cell prompt) ... -> cell prompt ...", cell=n_cells).clone()
        for i, cell in members:
            index = (slice(None), cell["pos"] if "pos" in cell else slice(None), *((cell["head"],) if "head" in cell else ()))
            view[i][index] = source[index]
        return einops.rearrange(view, "cell prompt ... -> (cell prompt) ...")

    return hook


def keeps_last_logits(model, tokens: torch.Tensor) -> dict:
    """``{"logits_to_keep": 1}`` where the model honours it (Hugging Face models under a bridge do), else ``{}``."""
    with torch.no_grad():
        return {"logits_to_keep": 1} if model.run_with_hooks(tokens[:1, :2], logits_to_keep=1).shape[1] == 1 else {}


def hand_batched_sweep(model, kind: str, source: list[torch.Tensor], target_tokens, metric, cells: pd.DataFrame, per_forward: int) -> tuple[float, torch.Tensor]:
    """Seconds and values of the hand-batched hook loop over ``cells``: ``per_forward`` cells per forward (last-position logits only)."""
    n = target_tokens.shape[0]
    records = cells.to_dict("records")
    values = []
    keep = keeps_last_logits(model, target_tokens)
    started = time.perf_counter()
    with torch.no_grad():
        for begin in range(0, len(records), per_forward):
            group = records[begin : begin + per_forward]
            by_layer: dict[int, list] = {}
            for i, cell in enumerate(group):
                by_layer.setdefault(int(cell["layer"]), []).append((i, cell))
            hooks = [(site_name(kind, layer), _splice(source[layer], members, len(group))) for layer, members in by_layer.items()]
            tokens = einops.repeat(target_tokens, "prompt pos -> (cell prompt) pos", cell=len(group))
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks, **keep)
            values += [float(reduce_metric(metric, logits[i * n : (i + 1) * n])) for i in range(len(group))]
    return time.perf_counter() - started, torch.tensor(values)


def executed_flops(run) -> float:
    """Matmul FLOPs of ``run()`` (torch's FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return float(counter.get_total_flops())


def sweep(model, site: str, by_position: bool, clean, corrupt, metric, direction: str, args) -> dict:
    """One sweep three ways; the numbers of one table row."""
    kind, setter, axes = SWEEPS[(site, by_position)]
    source_tokens, target_tokens = (clean, corrupt) if direction == "denoising" else (corrupt, clean)
    n_prompts, n_pos = clean.shape
    source, target = site_caches(model, kind, source_tokens), site_caches(model, kind, target_tokens)
    sizes = {"layer": model.cfg.n_layers, "pos": n_pos, "head": model.cfg.n_heads}
    n_every = math.prod(sizes[axis] for axis in axes)
    changed = changed_cells(axes, source, target)
    per_forward = max(1, args.hand_rows // n_prompts)
    n_sample = len(changed) if args.full else min(len(changed), per_forward * math.ceil(args.tl_cells / per_forward))
    cells = changed.sample(n=n_sample, random_state=0).sort_values(list(axes)).reset_index(drop=True)
    rate = matmul_rate()  # the best of before and after each repeat: the machine is shared
    activation_patching(model, clean[:1, :4], corrupt[:1, :4], metric=lambda logits: logits[:, -1, 0], site=site, progress=False)  # warm-up
    call = lambda: activation_patching(model, clean, corrupt, metric, site=site, by_position=by_position, direction=direction, progress=False)  # noqa: E731
    best = {"interp": math.inf, "hand": math.inf, "tl": math.inf}
    for _ in range(args.repeats):  # interleaved, best of each
        started = time.perf_counter()
        ours = call()
        best["interp"] = min(best["interp"], time.perf_counter() - started)
        seconds, hand_values = hand_batched_sweep(model, kind, source, target_tokens, metric, cells[list(axes)], per_forward)
        best["hand"] = min(best["hand"], seconds)
        seconds, tl_values = transformer_lens_sweep(model, kind, setter, source_tokens, target_tokens, metric, cells[list(axes)])
        best["tl"] = min(best["tl"], seconds)
        rate = max(rate, matmul_rate())
    index = tuple(torch.tensor(cells[axis].to_numpy()) for axis in axes)
    floor = floor_flops(model, changed, n_prompts, n_pos)
    return {
        "cells": n_every, "changed": len(changed), "sampled": n_sample, "per_forward": per_forward, "ours": ours,
        "interp_s": best["interp"],
        "hand_s": best["hand"] * math.ceil(len(changed) / per_forward) / max(1, math.ceil(n_sample / per_forward)),
        "tl_s": best["tl"] * n_every / max(1, n_sample),
        "diff_hand": float((ours.values[index] - hand_values).abs().max()) if n_sample else 0.0,
        "diff_tl": float((ours.values[index] - tl_values).abs().max()) if n_sample else 0.0,
        "floor": floor, "rate": rate, "executed": math.nan if args.no_flop_count else executed_flops(call),
    }  # fmt: skip


def print_row(label: str, name: str, r: dict) -> None:
    floor_s = r["floor"] / r["rate"]
    executed = f"{r['executed'] / 1e9:>7.0f}" if not math.isnan(r["executed"]) else f"{'-':>7}"
    print(f"{label:<12} {name:<25} {r['cells']:>5} {r['interp_s']:>8.2f} {r['hand_s']:>8.2f} {r['tl_s']:>8.2f} {r['hand_s'] / r['interp_s']:>6.1f}x {r['tl_s'] / r['interp_s']:>6.1f}x "
          f"{max(r['diff_hand'], r['diff_tl']):>9.1e} {r['floor'] / 1e9:>7.0f} {executed} {r['rate'] / 1e9:>5.0f} {floor_s:>7.2f} {r['interp_s'] / floor_s:>5.2f}x")  # fmt: skip
    ours = r["ours"]
    sampled = "every changed cell" if r["sampled"] == r["changed"] else f"{r['sampled']} of {r['changed']} changed cells, hand/TL time scaled"
    path = f"fast path ({', '.join(ours.shortcuts) or 'no shortcuts'})" if ours.fast_path else f"FELL BACK to full forwards: {ours.fallback_reason}"
    print(f"{'':<12} compared on {sampled}; hand: {r['per_forward']} cells per forward; interp: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="run the hand loop and transformer_lens on every changed cell (slow on a CPU)")
    parser.add_argument("--tl-cells", type=int, default=48, help="cells per sweep the hand loop and transformer_lens run when not --full")
    parser.add_argument("--hand-rows", type=int, default=128, help="rows (cells x prompts) per forward of the hand-batched loop")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of the three timings; the best of each counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "interp-bench", help="where the benchmark model is built once")
    parser.add_argument("--model", default=None, help="a named or local model (e.g. smollm2-135m-instruct) instead of the GPT-2-small-shaped random one")
    parser.add_argument("--prompts", type=int, nargs="+", default=list(N_PROMPTS), help="prompt pairs per sweep; several sizes: one block each, then the growth")
    parser.add_argument("--ioi", action="store_true", help=f"IOI prompts and the per-head sweep of the IOI finding (default model {IOI_MODEL})")
    parser.add_argument("--corruptions", choices=("both", "one"), default="both", help="'one': only the one-token swap (the every-token swap is the slow worst case)")
    parser.add_argument("--no-flop-count", action="store_true", help="skip the untimed rerun of interp that counts its executed FLOPs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.model or (IOI_MODEL if args.ioi else None)
    model = load_model(model_directory(DEFAULT_MODEL, args.root) if name is None else name, device="cpu")
    if args.ioi:
        prompts = ioi_prompts(model.tokenizer, n_prompts=max(args.prompts), seed=0)
    shape = f"{model.cfg.n_layers} layers, d_model {model.cfg.d_model}, {model.cfg.n_heads} heads, vocab {model.cfg.d_vocab}"
    print(f"model: {name or 'GPT-2-small-shaped'} ({shape}); torch threads {torch.get_num_threads()}")
    results: dict[tuple[str, str], dict[int, dict]] = {}
    for n_prompts in args.prompts:
        n_tokens = prompts.clean_tokens.shape[1] if args.ioi else N_TOKENS
        print(f"\n{n_prompts} prompts x {n_tokens} tokens; seconds (hand, TL: full sweep), speed-up of interp, max |diff| of values, GFLOPs (floor, executed), matmul GFLOP/s, interp s / floor s")
        print(f"{'corruption':<12} {'sweep':<25} {'cells':>5} {'interp s':>8} {'hand s':>8} {'TL s':>8} {'vs hand':>7} {'vs TL':>7} {'max|diff|':>9} {'floor':>7} {'exec':>7} {'rate':>5} {'floor s':>7} {'/floor':>6}")
        if args.ioi:
            subset = prompts.select(range(n_prompts))
            metric = logit_diff(answer=subset.io_ids, wrong=subset.s_ids)
            cases = [("IOI ABC", "attn_head_out per head", ("attn_head_out", False), subset.clean_tokens, subset.corrupt_tokens, metric, "noising")]
        else:
            cases = []
            for every_token in (False, True) if args.corruptions == "both" else (False,):
                clean, corrupt = make_pairs(model, every_token, n_prompts)
                metric = logit_diff(answer=clean[:, SWAP_POSITION], wrong=corrupt[:, SWAP_POSITION])  # IOI-style: the clean vs the corrupt name
                label = "every token" if every_token else "one token"
                cases += [(label, f"{site} by position", (site, True), clean, corrupt, metric, "denoising") for site in ("resid_pre", "attn_head_out")]
        for label, sweep_name, (site, by_position), clean, corrupt, metric, direction in cases:
            row = sweep(model, site, by_position, clean, corrupt, metric, direction, args)
            results.setdefault((label, sweep_name), {})[n_prompts] = row
            print_row(label, sweep_name, row)
    if len(args.prompts) > 1:
        small, large = min(args.prompts), max(args.prompts)
        print(f"\nhow the speed-up grows with the work ({small} -> {large} prompts)")
        for (label, sweep_name), rows in results.items():
            a, b = rows[small], rows[large]
            work = b["floor"] / a["floor"]
            hand = (a["hand_s"] / a["interp_s"], b["hand_s"] / b["interp_s"])
            tl = (a["tl_s"] / a["interp_s"], b["tl_s"] / b["interp_s"])
            print(f"{label:<12} {sweep_name:<25} work x{work:.1f}; vs hand {hand[0]:.1f}x -> {hand[1]:.1f}x; vs TL {tl[0]:.1f}x -> {tl[1]:.1f}x; "
                  f"interp s x{b['interp_s'] / a['interp_s']:.1f}, hand s x{b['hand_s'] / a['hand_s']:.1f}, TL s x{b['tl_s'] / a['tl_s']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
