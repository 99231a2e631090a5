"""Harmful vs benign requests on SmolLM2-135M-Instruct: linear probes on h_last at every layer.

    python circuits/real_harm_probes/real_harm_probes.py [--n 128] [--out runs/real_harm_probes]

1. ``--n`` AdvBench behaviours (``assets/prompts/advbench/advbench.txt``, seed 0)
   and ``--n`` benign requests of the same form (``assets/prompts/benign_instructions.jsonl``), each
   a user turn of the chat template with the generation prompt; h_last is the template's last
   token, where the answer starts.
2. ``interp.probes.train_probes`` on the embeddings (the lexical baseline) and every resid_post:
   logistic probes and difference of means, 5-fold CV plus a stratified 20% held-out split.
   Held-out AUROC gets a 95% bootstrap interval (2,000 stratified resamples of the held-out prompts).
3. Length control: the prompts whose formatted token length occurs in both classes, the same
   number of each class per length. Their out-of-fold AUROC (every prompt scored by a probe that
   did not see it), and the AUROC of probes retrained on that subset only.

Writes ``results.json`` and ``auroc_by_layer.html`` to ``--out`` and, in this folder (the findings'),
``results.json`` and the figure as ``auroc_by_layer.png``.
"""

import argparse
import json
import random
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch

from interp.data import PromptSet, tokenize_prompts
from interp.directions import chat_format, read_instructions
from interp.io import atomic_write_figure, atomic_write_json
from interp.model import load_model
from interp.plots import screenshot
from interp.probes import HOLDOUT, auroc, train_probes
from interp.model.weights import weights_hash
from interp.store import capture_activations

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ADVBENCH = ROOT / "assets" / "prompts" / "advbench" / "advbench.txt"  # MIT; SOURCES.md there
BENIGN = ROOT / "assets" / "prompts" / "benign_instructions.jsonl"


def sample(prompts: PromptSet, n: int, seed: int) -> PromptSet:
    rows = list(range(len(prompts)))
    random.Random(seed).shuffle(rows)
    return prompts.select(sorted(rows[:n]))


def bootstrap_auroc(scores: torch.Tensor, y: torch.Tensor, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the AUROC, resampling positives and negatives separately."""
    generator = torch.Generator().manual_seed(seed)
    pos, neg = torch.nonzero(y).flatten(), torch.nonzero(~y).flatten()
    pick = torch.cat([pos[torch.randint(len(pos), (n_boot, len(pos)), generator=generator)],
                      neg[torch.randint(len(neg), (n_boot, len(neg)), generator=generator)]], dim=1)  # fmt: skip
    values = auroc(scores[pick], y[pick]).numpy()
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def length_matched(lengths: list[int], y: torch.Tensor) -> list[int]:
    """Indices with equal counts of each class at every token length (the first ones of each class)."""
    keep = []
    for length in sorted(set(lengths)):
        pos = [i for i, n in enumerate(lengths) if n == length and y[i]]
        neg = [i for i, n in enumerate(lengths) if n == length and not y[i]]
        k = min(len(pos), len(neg))
        keep += pos[:k] + neg[:k]
    return sorted(keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=128, help="prompts per class")
    parser.add_argument("--out", type=Path, default=Path("runs/real_harm_probes"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("smollm2-135m-instruct", device="cpu")
    harmful = sample(read_instructions(ADVBENCH, label="harmful"), args.n, seed=0)
    benign = sample(read_instructions(BENIGN, label="benign"), args.n, seed=0)
    prompts = chat_format(model.tokenizer, PromptSet(harmful.records + benign.records, "advbench + benign"))
    names = ["hook_embed"] + [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    acts = capture_activations(model, prompts, hooks=names, positions="last", dtype=torch.float32)
    stack = torch.stack([acts[name] for name in names])
    probe = train_probes(stack, prompts.labels, hooks=names, texts=prompts.texts, progress=False)
    print(probe.summary())
    # a lexical baseline that h_last's embedding cannot be (its token is the template's last, the same for every prompt):
    # the mean token embedding of the whole formatted prompt, i.e. a bag of the instruction's words
    lengths = [len(ids) for ids in tokenize_prompts(model, prompts)]
    embedded = capture_activations(model, prompts, hooks=["hook_embed"], positions="all", dtype=torch.float32)["hook_embed"]
    bag = embedded.sum(1) / torch.tensor(lengths, dtype=torch.float32)[:, None]
    lexical = train_probes(bag[None], prompts.labels, hooks=["hook_embed"], texts=prompts.texts, progress=False)

    y = probe.y.bool()
    held = probe.fold == HOLDOUT
    fit = ~held
    diff = stack[:, fit & y].mean(1) - stack[:, fit & ~y].mean(1)  # the raw difference of means of the fitted prompts
    diff_scores = torch.einsum("lnd,ld->ln", stack.double(), diff.double())
    matched = length_matched(lengths, y)
    matched_index = torch.tensor(matched)
    retrained = train_probes(stack[:, matched_index], [prompts.labels[i] for i in matched], hooks=names, progress=False)
    rows = []
    for i, label in enumerate(probe.layer_labels):
        lo, hi = bootstrap_auroc(probe.oof_logits[i][held].double(), y[held])
        dlo, dhi = bootstrap_auroc(diff_scores[i][held], y[held])
        cv_mean, cv_lo, cv_hi = (float(part[i]) for part in probe.cv_interval("auroc"))
        rows.append({
            "layer": label, "hook": names[i],
            "holdout_auroc": float(probe.holdout_auroc[i]), "holdout_interval": [lo, hi],
            "diff_means_holdout_auroc": float(auroc(diff_scores[i][held], y[held])), "diff_means_holdout_interval": [dlo, dhi],
            "cv_auroc": cv_mean, "cv_interval": [cv_lo, cv_hi],
            "matched_oof_auroc": float(auroc(probe.oof_logits[i][matched_index], y[matched_index])),
            "matched_retrained_cv_auroc": float(retrained.cv_auroc[i].mean()),
            "matched_retrained_holdout_auroc": float(retrained.holdout_auroc[i]),
        })  # fmt: skip
    best = probe.best_index  # by CV AUROC: more prompts than the held-out split, whose AUROC saturates at 1.0
    bag_lo, bag_hi = bootstrap_auroc(lexical.oof_logits[0][held].double(), y[held])
    bag_row = {"holdout_auroc": float(lexical.holdout_auroc[0]), "holdout_interval": [bag_lo, bag_hi], "cv_auroc": float(lexical.cv_auroc[0].mean()),
               "matched_oof_auroc": float(auroc(lexical.oof_logits[0][matched_index], y[matched_index]))}  # fmt: skip
    summary = {
        "model": "smollm2-135m-instruct", "n_per_class": args.n, "n_heldout": int(held.sum()),
        "n_length_matched": len(matched), "length_auroc_all": float(auroc(torch.tensor(lengths, dtype=torch.float64), y)),
        "mean_tokens": {"harmful": float(np.mean([n for n, t in zip(lengths, y) if t])), "benign": float(np.mean([n for n, t in zip(lengths, y) if not t]))},
        "best_layer": rows[best]["layer"], "best_holdout_auroc": rows[best]["holdout_auroc"],
        "best_cv_auroc": rows[best]["cv_auroc"], "best_holdout_layer_first": max(range(1, len(rows)), key=lambda i: rows[i]["holdout_auroc"]) - 1,
        "embedding_holdout_auroc": rows[0]["holdout_auroc"], "mean_embedding_baseline": bag_row, "weights_hash": weights_hash(model),
        "layers": rows,
    }  # fmt: skip
    print(f"\n{'layer':>6} {'held-out logistic [95%]':>26} {'held-out diff-means [95%]':>28} {'CV':>6} {'matched OOF':>11} {'matched retrained':>17}")
    for row in rows:
        print(f"{row['layer']:>6} {row['holdout_auroc']:8.3f} [{row['holdout_interval'][0]:.3f}, {row['holdout_interval'][1]:.3f}]   "
              f"{row['diff_means_holdout_auroc']:8.3f} [{row['diff_means_holdout_interval'][0]:.3f}, {row['diff_means_holdout_interval'][1]:.3f}]     "
              f"{row['cv_auroc']:6.3f} {row['matched_oof_auroc']:11.3f} {row['matched_retrained_cv_auroc']:17.3f}")  # fmt: skip
    print(f"mean token embedding (bag of words): held-out {bag_row['holdout_auroc']:.3f} [{bag_lo:.3f}, {bag_hi:.3f}], CV {bag_row['cv_auroc']:.3f}, "
          f"length-matched OOF {bag_row['matched_oof_auroc']:.3f}")
    print(f"best layer (CV) {summary['best_layer']} (held-out {summary['best_holdout_auroc']:.3f}, CV {summary['best_cv_auroc']:.3f}); h_last embeddings {summary['embedding_holdout_auroc']:.3f}; "
          f"{len(matched)} length-matched prompts; token length alone: AUROC {summary['length_auroc_all']:.3f}")  # fmt: skip

    labels = [row["layer"] for row in rows]
    figure = go.Figure()
    for key, name, color in (("holdout", "logistic, held-out", "#1f77b4"), ("diff_means_holdout", "difference of means, held-out", "#ff7f0e")):
        values = np.array([row[f"{key}_auroc"] for row in rows])
        interval = np.array([row[f"{key}_interval"] for row in rows])
        figure.add_trace(go.Scatter(x=labels, y=values, name=name, mode="lines+markers", line=dict(color=color),
                                    error_y=dict(type="data", symmetric=False, array=interval[:, 1] - values, arrayminus=values - interval[:, 0])))  # fmt: skip
    figure.add_trace(go.Scatter(x=labels, y=[row["cv_auroc"] for row in rows], name="logistic, 5-fold CV mean", mode="lines", line=dict(dash="dot", color="#1f77b4")))
    figure.add_trace(go.Scatter(x=labels, y=[row["matched_oof_auroc"] for row in rows], name=f"logistic, length-matched subset (n={len(matched)}, out-of-fold)", mode="lines+markers", line=dict(color="#2ca02c")))
    figure.add_hline(y=bag_row["holdout_auroc"], line=dict(color="#9467bd", dash="dot"), annotation_text="mean token embedding (bag of words), held-out",
                     annotation_position="bottom right")
    figure.add_hline(y=0.5, line=dict(color="grey", dash="dash"), annotation_text="chance")
    figure.update_layout(title=f"Harmful (AdvBench) vs benign requests, SmolLM2-135M-Instruct, h_last: AUROC by layer ({args.n}+{args.n} prompts, {int(held.sum())} held out)",
                         xaxis_title="site (embed = token embeddings, then resid_post of each layer)", yaxis_title="AUROC", yaxis=dict(range=[0.4, 1.02]),
                         xaxis=dict(type="category"), template="plotly_white", legend=dict(x=0.45, y=0.08), width=1100, height=560)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "results.json", summary)
    atomic_write_json(HERE / "results.json", summary)
    atomic_write_figure(args.out / "auroc_by_layer.html", figure)
    screenshot(args.out / "auroc_by_layer.html", HERE / "auroc_by_layer.png")


if __name__ == "__main__":
    main()
