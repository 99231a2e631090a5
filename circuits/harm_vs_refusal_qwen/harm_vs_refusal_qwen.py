"""Harmfulness is recognised apart from refusal on Qwen2.5-Coder-0.5B-Instruct (Zhao et al. 2025, the seed paper's dissociation).

    python circuits/harm_vs_refusal_qwen/harm_vs_refusal_qwen.py [--n 96] [--out runs/harm_vs_refusal_qwen]

Needs the refusal direction chosen by ``circuits/refusal_direction_qwen/refusal_direction_qwen.py`` (its ``--out`` as ``--direction``; the
choice is read from ``circuits/refusal_direction_qwen/results.json``).

1. ``--n`` AdvBench behaviours and ``--n`` benign requests that the direction was not found on (the tail of
   AdvBench's seeded order; the "heldout" benign split), in the chat template. Two token positions:
   ``t_inst``, the last token of the user's text (before ``<|im_end|>``), and ``t_post``, the template's last
   token (where the answer starts; the refusal direction is read there).
2. Per layer (``resid_post``), the harmfulness direction (difference of means at ``t_inst``) and the refusal-side
   difference of means at ``t_post``: their cosine, and each one's cosine with the chosen refusal direction.
3. Probes (``interp.probes.train_probes``, logistic, 5-fold CV and a 20% held-out split) at both positions on
   every layer, with the embedding (lexical) baseline and a length baseline (AUROC of the token count alone),
   on the unmodified model and on the model with the refusal direction orthogonalised out of its weights (which
   no longer refuses: ``circuits/refusal_direction_qwen``). Recognition that survives there is not refusal.

Writes ``results.json`` and the figure to ``--out`` and, in this folder (the findings'), ``results.json`` and
``auroc_by_layer.png``.
"""

import argparse
import json
import random
import time
from pathlib import Path

import plotly.graph_objects as go
import torch

from interp.data import PromptSet, tokenize_prompts
from interp.directions import DirectionResult, RefusalDirection, chat_format, orthogonalized, read_instructions, split_instructions
from interp.io import atomic_write_figure, atomic_write_json
from interp.model import load_model
from interp.plots import screenshot
from interp.probes import auroc, train_probes
from interp.store import capture_activations

MODEL = "qwen2.5-coder-0.5b-instruct"
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ADVBENCH = ROOT / "assets" / "prompts" / "advbench" / "advbench.txt"
BENIGN = ROOT / "assets" / "prompts" / "benign_instructions.jsonl"
END_OF_USER = 5  # <|im_end|> \n <|im_start|> assistant \n: t_inst is the 6th token from the end


def prompts(n: int) -> PromptSet:
    """``n`` AdvBench behaviours from the end of the seeded order (never used to find the direction) and ``n`` held-out benign requests."""
    advbench = read_instructions(ADVBENCH, label="harmful")
    order = list(range(len(advbench)))
    random.Random(1).shuffle(order)
    _, benign_held = split_instructions(read_instructions(BENIGN, label="benign"))
    if n > len(benign_held):
        raise SystemExit(f"--n {n}: there are only {len(benign_held)} held-out benign requests")
    return PromptSet(advbench.select(order[-n:]).records + benign_held.select(range(n)).records, "advbench tail + benign heldout")


def read(model, formatted: PromptSet, hooks: list[str]) -> dict[str, torch.Tensor]:
    """``{position name: [hook, prompt, d_model]}`` at t_inst and t_post."""
    acts = capture_activations(model, formatted, hooks=hooks, positions=[-1 - END_OF_USER, -1], dtype=torch.float32)
    return {"t_inst": torch.stack([acts[h][:, 0] for h in hooks]), "t_post": torch.stack([acts[h][:, 1] for h in hooks])}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/harm_vs_refusal_qwen"))
    parser.add_argument("--direction", type=Path, default=Path("runs/refusal_direction_qwen"))
    parser.add_argument("--n", type=int, default=80, help="prompts per class")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    model = load_model(MODEL, device="cpu")
    chosen = json.loads((ROOT / "circuits" / "refusal_direction_qwen" / "results.json").read_text())["evaluations"]["chosen"]
    direction: RefusalDirection = DirectionResult.load(args.direction).candidate(int(chosen["direction"].split("_")[1]), chosen["layer"])
    formatted = chat_format(model.tokenizer, prompts(args.n))
    suffix = model.tokenizer.convert_ids_to_tokens(tokenize_prompts(model, formatted.select([0]))[0][-1 - END_OF_USER :].tolist())
    assert suffix[1:] == ["<|im_end|>", "Ċ", "<|im_start|>", "assistant", "Ċ"], f"unexpected template suffix {suffix}"
    y = torch.tensor([label == "harmful" for label in formatted.labels])
    lengths = torch.tensor([len(ids) for ids in tokenize_prompts(model, formatted)], dtype=torch.float64)
    hooks = ["hook_embed"] + [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    results = {"model": MODEL, "n_per_class": args.n, "direction": {"layer": direction.layer, "position": direction.position_label},
               "length_baseline_auroc": float(auroc(lengths, y))}  # fmt: skip
    figure = go.Figure()
    for state in ("unmodified", "orthogonalised"):
        if state == "unmodified":
            acts = read(model, formatted, hooks)
        else:
            with orthogonalized(model, direction):
                acts = read(model, formatted, hooks)
        per_position = {}
        for position, values in acts.items():
            probe = train_probes(values, formatted.labels, hooks=hooks, texts=formatted.texts, progress=False)
            cv = probe.cv_auroc.mean(-1)
            per_position[position] = {"cv_auroc": [round(float(v), 4) for v in cv],
                                      "holdout_auroc": [round(float(v), 4) for v in probe.holdout_auroc]}  # fmt: skip
            figure.add_trace(go.Scatter(x=list(range(-1, model.cfg.n_layers)), y=cv.tolist(), mode="lines+markers",
                                        name=f"{state}, {position}", hovertext=hooks))  # fmt: skip
        harm = acts["t_inst"][:, y].double().mean(1) - acts["t_inst"][:, ~y].double().mean(1)  # [hook, d_model]
        post = acts["t_post"][:, y].double().mean(1) - acts["t_post"][:, ~y].double().mean(1)
        per_position["cosine_t_inst_vs_t_post"] = [round(cosine(harm[i], post[i]), 4) for i in range(len(hooks))]
        per_position["cosine_t_inst_vs_refusal_direction"] = [round(cosine(harm[i], direction.vector), 4) for i in range(len(hooks))]
        per_position["cosine_t_post_vs_refusal_direction"] = [round(cosine(post[i], direction.vector), 4) for i in range(len(hooks))]
        results[state] = per_position
        print(f"{state}: best CV AUROC t_inst {max(per_position['t_inst']['cv_auroc'][1:]):.3f}, "
              f"t_post {max(per_position['t_post']['cv_auroc'][1:]):.3f}; embedding {per_position['t_inst']['cv_auroc'][0]:.3f}", flush=True)  # fmt: skip
    results["length_baseline_auroc"] = round(results["length_baseline_auroc"], 4)
    results["seconds"] = round(time.time() - start, 1)
    figure.update_layout(title="Harmful vs benign requests, Qwen2.5-Coder-0.5B-Instruct: probe CV AUROC per layer",
                         xaxis_title="layer (-1: token embedding)", yaxis_title="5-fold CV AUROC", yaxis_range=[0.3, 1.02])  # fmt: skip
    atomic_write_json(args.out / "results.json", results)
    atomic_write_figure(args.out / "auroc_by_layer.html", figure)
    atomic_write_json(HERE / "results.json", results)
    screenshot(args.out / "auroc_by_layer.html", HERE / "auroc_by_layer.png", "1200,700")
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
