"""Indirect object identification (Wang et al. 2022) in SmolLM2-135M-Instruct: baseline, head patching, name movers, mean-ablation.

    python circuits/ioi_smollm2/ioi_smollm2.py [--out runs/ioi_smollm2] [--n-prompts 120] [--n-patch 16] [--n-position 2]

1. ``interp.mechanisms.ioi.ioi_prompts``: ``--n-prompts`` prompts from the project's templates (one-token
   names, places and objects; ABBA and BABA alternating; BOS ``<|im_start|>`` first, as
   ``model.to_tokens`` does), each with its ABC corruption (IO, S1, S2 -> three fresh names).
2. Baseline: ``logit(IO) - logit(S)`` at the last token, clean and corrupt.
3. Patching, noising (the corrupt run's head output patched into the clean run), metric the
   logit difference: ``activation_patching`` of ``attn_head_out`` per head on the first
   ``--n-patch`` prompts and per head and position on the first ``--n-position``;
   ``attribution_patching`` of both on every prompt. Spearman(attribution, activation) over heads.
4. The top ``--top-k`` heads (largest drop under activation patching) are mean-ablated together
   (``hook_z`` set to its per-position mean over the ABC prompts) against ``--n-random`` draws of
   as many other heads from the same layers: the fraction of the mean logit difference removed.
5. Name movers: attention from the last token to IO and to S (``interp.mechanisms.attention.attention_to``)
   for the top heads in the later half of the layers.

Writes ``--findings`` (default ``circuits/ioi_smollm2``): ``results.json`` and PNG figures
(headless Chromium screenshots); the full results (safetensors + HTML with plotly inlined) go to ``--out``.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from interp.io import atomic_write_json
from interp.mechanisms.attention import attention_pattern, attention_to
from interp.mechanisms.induction import head_position_means, ranked_heads, same_layer_draws
from interp.mechanisms.ioi import IOIPrompts, ablation_removed, ioi_prompts, logit_differences, rank_correlation
from interp.metrics import logit_diff
from interp.model import load_model
from interp.patching import activation_patching, attribution_patching
from interp.plots import screenshot

MODEL = "smollm2-135m-instruct"
TARGETS = {"baseline_positive_min": 0.90, "top_removed_min": 0.50, "random_removed_max": 0.15, "spearman_aim": 0.7}


def ioi_finding(model, prompts: IOIPrompts, n_patch: int, n_position: int, top_k: int = 10, n_random: int = 5, seed: int = 0, out: Path | None = None) -> dict:
    """Every number of the finding on ``prompts`` (see the module docstring); the patching results are saved under ``out`` if given."""
    timings: dict[str, float] = {}
    n_layers = int(model.cfg.n_layers)

    def timed(what: str, run):
        began = time.perf_counter()
        value = run()
        timings[what] = round(time.perf_counter() - began, 1)
        return value

    clean_ld = timed("baseline", lambda: logit_differences(model, prompts.clean_tokens, prompts.io_ids, prompts.s_ids))
    corrupt_ld = logit_differences(model, prompts.corrupt_tokens, prompts.io_ids, prompts.s_ids)
    by_order = {order: [i for i, o in enumerate(prompts.orders) if o == order] for order in ("ABBA", "BABA")}

    def patch(method, subset: IOIPrompts, by_position: bool):
        metric = logit_diff(answer=subset.io_ids, wrong=subset.s_ids)
        options = {"progress": True} if method is activation_patching else {}
        return method(model, subset.clean_tokens, subset.corrupt_tokens, metric, site="attn_head_out", by_position=by_position, direction="noising", **options)

    patch_set, position_set = prompts.select(range(n_patch)), prompts.select(range(n_position))
    heads_act = timed("activation_heads", lambda: patch(activation_patching, patch_set, False))
    heads_attr = timed("attribution_heads", lambda: patch(attribution_patching, prompts, False))
    heads_attr_same = patch(attribution_patching, patch_set, False)  # on the activation patching's prompts, for the correlation
    position_act = timed("activation_head_positions", lambda: patch(activation_patching, position_set, True))
    position_attr = timed("attribution_head_positions", lambda: patch(attribution_patching, prompts, True))
    position_attr_same = patch(attribution_patching, position_set, True)

    drop = -heads_act.effect  # noising: how much patching the head's corrupt output lowers the logit difference
    top = tuple(ranked_heads(drop)[:top_k])
    means = timed("position_means", lambda: head_position_means(model, prompts.corrupt_tokens))
    draws = same_layer_draws(top, int(model.cfg.n_heads), n_random, seed=seed)
    removed = timed("ablation", lambda: ablation_removed(model, prompts, (top, *draws), means))

    to_io = attention_to(model, prompts.clean_tokens, prompts.io_positions).mean(0)
    to_s1 = attention_to(model, prompts.clean_tokens, prompts.s1_positions).mean(0)
    to_s2 = attention_to(model, prompts.clean_tokens, torch.full((len(prompts),), prompts.positions["S2"])).mean(0)
    late_top = [(layer, head) for layer, head in top if layer >= n_layers // 2]
    name_movers = [{"head": f"L{l}H{h}", "drop": round(float(drop[l, h]), 3), "attention_io": round(float(to_io[l, h]), 3),
                    "attention_s1": round(float(to_s1[l, h]), 3), "attention_s2": round(float(to_s2[l, h]), 3),
                    "io_over_s": bool(to_io[l, h] > to_s1[l, h] + to_s2[l, h])} for l, h in late_top]  # fmt: skip

    if out is not None:
        for name, result in {"activation_heads": heads_act, "attribution_heads": heads_attr, "activation_head_positions": position_act,
                             "attribution_head_positions": position_attr}.items():  # fmt: skip
            result.save(out / name)
        if late_top:
            layer, head = max(late_top, key=lambda lh: float(to_io[lh] - to_s1[lh] - to_s2[lh]))
            attention_pattern(model, prompts.records[0]["text"], layer, head).save(out / "name_mover_pattern")

    return {
        "n_prompts": len(prompts), "n_patch": n_patch, "n_position": n_position, "bos": prompts.prepend_bos,
        "positions": prompts.positions, "position_labels": list(prompts.position_labels),
        "baseline": {"fraction_positive": float((clean_ld > 0).float().mean()), "mean_logit_diff": float(clean_ld.mean()),
                     "corrupt_mean_logit_diff": float(corrupt_ld.mean()),
                     "by_order": {o: {"fraction_positive": float((clean_ld[i] > 0).float().mean()), "mean_logit_diff": float(clean_ld[i].mean())} for o, i in by_order.items()}},
        "activation_heads": {"clean": heads_act.clean_metric, "corrupt": heads_act.corrupt_metric, "fast_path": heads_act.fast_path, "fallback_reason": heads_act.fallback_reason, "shortcuts": list(heads_act.shortcuts),
                             "head_positions_shortcuts": list(position_act.shortcuts),
                             "top": [{"head": f"L{l}H{h}", "drop": round(float(drop[l, h]), 3)} for l, h in top]},
        "attribution_heads_top": [{"head": c.label, "effect": round(c.effect, 3)} for c in heads_attr.top(top_k)],
        "activation_head_positions_top": [{"cell": c.label, "effect": round(c.effect, 3)} for c in position_act.top(top_k)],
        "attribution_head_positions_top": [{"cell": c.label, "effect": round(c.effect, 3)} for c in position_attr.top(top_k)],
        "spearman": {"heads": rank_correlation(heads_attr_same.effect, heads_act.effect), "head_positions": rank_correlation(position_attr_same.effect, position_act.effect),
                     "heads_attribution_all_prompts": rank_correlation(heads_attr.effect, heads_act.effect)},
        "ablation": {"top_heads": [f"L{l}H{h}" for l, h in top], "top_removed": float(removed[0]), "random_removed": float(removed[1:].mean()),
                     "random_removed_draws": [round(float(r), 4) for r in removed[1:]], "random_draws": [[f"L{l}H{h}" for l, h in d] for d in draws],
                     "means": "per-position mean of hook_z over the ABC prompts"},
        "name_movers": name_movers,
        "seconds": timings,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/ioi_smollm2"), help="full results (safetensors, HTML)")
    parser.add_argument("--findings", type=Path, default=Path(__file__).resolve().parent, help="where results.json and the PNGs go")
    parser.add_argument("--n-prompts", type=int, default=120)
    parser.add_argument("--n-patch", type=int, default=16, help="prompts for activation patching per head")
    parser.add_argument("--n-position", type=int, default=2, help="prompts for activation patching per head and position")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--n-random", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: on 2 shared cores, 2 threads ran 5x slower)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(MODEL, device="cpu")
    prompts = ioi_prompts(model.tokenizer, n_prompts=args.n_prompts, seed=args.seed)
    began = time.perf_counter()
    summary = ioi_finding(model, prompts, args.n_patch, args.n_position, args.top_k, args.n_random, args.seed, out=args.out)
    seconds = round(time.perf_counter() - began, 1)
    checks = {
        "baseline_positive": summary["baseline"]["fraction_positive"] >= TARGETS["baseline_positive_min"],
        "top_removed": summary["ablation"]["top_removed"] >= TARGETS["top_removed_min"],
        "random_removed": summary["ablation"]["random_removed"] <= TARGETS["random_removed_max"],
        "name_mover": any(row["io_over_s"] for row in summary["name_movers"]),
        "spearman_heads": summary["spearman"]["heads"] >= TARGETS["spearman_aim"],
    }
    settings = {"model": MODEL, **{k: v for k, v in vars(args).items() if k not in ("out", "findings", "threads")}}
    atomic_write_json(args.findings / "results.json", {"settings": settings, "targets": TARGETS, "checks": checks, "summary": summary, "seconds": seconds,
                                                       "examples": [prompts.records[i] for i in range(4)]})  # fmt: skip
    for name, size in {"activation_heads": "900,900", "attribution_heads": "900,900", "activation_head_positions": "1100,2400", "name_mover_pattern": "900,800"}.items():
        html = next((args.out / name).glob("*.html"), None)
        if html is not None:
            screenshot(html, args.findings / f"{name}.png", size)
    print(json.dumps({"checks": checks, "summary": summary, "seconds": seconds}, indent=1))
    return summary


if __name__ == "__main__":
    main()
