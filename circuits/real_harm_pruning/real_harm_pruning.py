"""Harm-weight pruning on a real chat model: which weights generate its harmful answers, and is harm still recognised without them?

    python circuits/real_harm_pruning/real_harm_pruning.py [--out runs/real_harm_pruning] [--methods signed_snip snip wanda]
    python circuits/real_harm_pruning/real_harm_pruning.py --model qwen2.5-coder-0.5b-instruct --out runs/harm_pruning_qwen

``--model smollm2-135m-instruct`` (default): ``circuits/real_harm_pruning/real_harm_pruning.toml``, findings in this folder.
``--model qwen2.5-coder-0.5b-instruct``: ``circuits/harm_pruning_qwen/harm_pruning_qwen.toml`` on the model with its refusal direction
orthogonalised out (written by ``circuits/refusal_direction_qwen/refusal_direction_qwen.py``), findings in ``circuits/harm_pruning_qwen/``; its TOML
adds two-digit arithmetic as the capability measure. The steps (for SmolLM2's TOML; Qwen's uses other rows):

1. ``circuits/real_harm_pruning/real_harm_pruning.toml`` once per method (``interp run``, resumable): the model's own greedy
   answers to 128 AdvBench behaviours (harm scores) and to 128 benign requests (benign scores), generated
   once into ``OUT/completions/``; per matrix, top q of the harm scores minus top p of the benign scores,
   p x q = {1%, 5%} x {1%, 2%}; a random mask of the same size per matrix as the control. At every
   setting: the loss of 48 held-out harmful answers and of 48 held-out benign answers, and the answers to
   32 other behaviours judged by ``harm-compliance``.
2. The judge against hand labels: the findings folder's ``judge_validation.jsonl`` holds a sample of answers
   (unpruned and pruned) with a label given by reading each one; agreement and errors are counted.
3. Recognition vs generation at the chosen mask (the set-difference setting with the largest
   harm-loss increase minus benign-loss increase): linear probes on h_last of 85 + 85 other harmful and
   benign requests at every layer, (a) trained on the unpruned model and applied frozen to the pruned
   model's activations, (b) retrained on the pruned model; held-out AUROC, with the random mask of the
   same size as the control.

Writes the sweeps to ``--out/METHOD``, ``--out/recognition.json`` and the ``RecognitionResult`` to
``--out/recognition/``; in the findings folder ``results.json``
and the figures ``losses.png`` and ``recognition.png``.
"""

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go

from interp.data import PromptSet
from interp.directions import read_instructions
from interp.experiments import load_config, run_experiment
from interp.io import atomic_write_figure, atomic_write_json, read_jsonl
from interp.plots import screenshot
from interp.model.weights import weights_hash
from interp.pruning import PruningMask, PruningResult, harmful_compliance, recognition_after_pruning

ROOT = Path(__file__).resolve().parents[2]
FINDINGS = {  # model -> (its TOML, the findings folder, which holds the TOML)
    model: (ROOT / "circuits" / folder / f"{folder}.toml", ROOT / "circuits" / folder)
    for model, folder in (("smollm2-135m-instruct", "real_harm_pruning"), ("qwen2.5-coder-0.5b-instruct", "harm_pruning_qwen"))
}
TOML, HERE = FINDINGS["smollm2-135m-instruct"]
ADVBENCH = ROOT / "assets" / "prompts" / "advbench" / "advbench.txt"  # MIT; SOURCES.md there
BENIGN = ROOT / "assets" / "prompts" / "benign_instructions.jsonl"
PROBE_OFFSET = 208  # AdvBench rows used by nothing else here (scores 0-127, held-out answers 128-175, judged prompts 176-207)
PROBE_N = 85  # the benign "heldout" split has 85 requests


def sweep(model, methods: list[str], out: Path) -> dict[str, PruningResult]:
    return {method: run_experiment(load_config(TOML, overrides=[f"method={method}"]), out / method, model=model) for method in methods}


def loss_table(results: dict[str, PruningResult]) -> list[dict]:
    rows = []
    for method, result in results.items():
        base = result.baseline.metrics
        for point in result.points:
            m = point.metrics
            rows.append({
                "method": method, "label": point.label, "kind": point.kind, "p": point.p, "q": point.q, "fraction": point.fraction,
                "harm_loss": m["harm_loss"], "benign_loss": m["benign_loss"],
                "harm_loss_change": m["harm_loss"] - base["harm_loss"], "benign_loss_change": m["benign_loss"] - base["benign_loss"],
                "harm_judge_rate": m["harm_judge_rate"], "harm_keyword_rate": m["harm_keyword_rate"],
                **({"task_accuracy": m["task_accuracy"], "task_accuracy_change": m["task_accuracy"] - base["task_accuracy"]} if "task_accuracy" in m else {}),
            })  # fmt: skip
    return rows


def chosen(rows: list[dict]) -> dict:
    """The set-difference setting whose harm loss rises most beyond its benign loss (fixed before looking at the probes)."""
    return max((row for row in rows if row["kind"] == "set_difference"), key=lambda row: row["harm_loss_change"] - row["benign_loss_change"])


def judge_agreement() -> dict:
    """The judge against the hand labels in judge_validation.jsonl (True = harmful compliance)."""
    path = HERE / "judge_validation.jsonl"
    if not path.exists():
        return {}
    rows = read_jsonl(path)
    judged = [harmful_compliance(row, row["response"]) for row in rows]
    labels = [row["hand_label"] for row in rows]
    return {
        "n": len(rows), "agreement": sum(j == h for j, h in zip(judged, labels)) / len(rows),
        "judge_true_hand_false": sum(j and not h for j, h in zip(judged, labels)),
        "judge_false_hand_true": sum(h and not j for j, h in zip(judged, labels)),
        "hand_rate": sum(labels) / len(rows), "judge_rate": sum(judged) / len(rows),
    }  # fmt: skip


def validation_sample(results: dict[str, PruningResult], choice: dict, n: int = 20) -> list[dict]:
    """Answers to label by hand: the first ``n`` unpruned ones and the first ``n`` at the chosen mask."""
    result = results[choice["method"]]
    instructions = [row["text"] for row in load_config(TOML).evaluation.harmful.load()]
    sample = []
    for label in ("baseline", choice["label"]):
        for instruction, (_, response) in list(zip(instructions, result[label].samples["harmful"]))[:n]:
            sample.append({"setting": f"{choice['method']}/{label}", "instruction": instruction, "response": response,
                           "judge": harmful_compliance({"instruction": instruction}, response)})  # fmt: skip
    return sample


def recognition(model, results: dict[str, PruningResult], choice: dict, out: Path) -> dict:
    """Step 3 (``interp.pruning.recognition_after_pruning``; as a TOML experiment: circuits/real_harm_pruning/real_harm_recognition.toml)."""
    harmful = read_instructions(ADVBENCH, label="harmful").select(range(PROBE_OFFSET, PROBE_OFFSET + PROBE_N))
    benign = PromptSet.from_file(BENIGN, text_field="prompt")
    benign = benign.select([i for i, record in enumerate(benign.records) if record["split"] == "heldout"][:PROBE_N])
    masks = {kind: PruningMask.load(out / choice["method"] / "masks" / f"{label}.safetensors")
             for kind, label in (("set_difference", choice["label"]), ("random", choice["label"].replace("set_difference", "random") + "_seed0"))}  # fmt: skip
    result = recognition_after_pruning(model, masks["set_difference"], harmful, benign, random_mask=masks["random"], progress=False)
    result.save(out / "recognition")
    table = result.table()
    layers = {"layer": table["layer"], "unpruned": [float(v) for v in result.probe.holdout_auroc]}
    for kind, name in (("set_difference", "mask"), ("random", "random")):
        layers[f"{kind}_frozen"], layers[f"{kind}_retrained"] = table[f"{name}_frozen"], table[f"{name}_retrained"]
    summary = {"n_per_class": PROBE_N, "n_heldout": result.n_heldout, "mask": choice, "layers": layers}
    atomic_write_json(out / "recognition.json", summary)
    return summary


def losses_figure(rows: list[dict], model_name: str) -> go.Figure:
    figure = go.Figure()
    colors = {"signed_snip": "#1f77b4", "snip": "#2ca02c", "wanda": "#d62728"}
    for method in colors:
        for kind, symbol in (("set_difference", "circle"), ("random", "x")):
            chosen_rows = [row for row in rows if row["method"] == method and row["kind"] == kind]
            if not chosen_rows:
                continue
            figure.add_trace(go.Scatter(
                x=[row["benign_loss_change"] for row in chosen_rows], y=[row["harm_loss_change"] for row in chosen_rows],
                mode="markers", name=f"{method}, {kind.replace('_', ' ')}", marker=dict(color=colors[method], symbol=symbol, size=10),
                text=[f"{row['label']}<br>{100 * row['fraction']:.2f}% of decoder weights<br>judged harmful {100 * row['harm_judge_rate']:.0f}%" for row in chosen_rows],
                hovertemplate="%{text}<br>benign loss +%{x:.3f} nats<br>harmful loss +%{y:.3f} nats<extra></extra>",
            ))  # fmt: skip
    top = max(max(row["harm_loss_change"], row["benign_loss_change"]) for row in rows)
    figure.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", line=dict(color="grey", dash="dash"), name="equal rise"))
    figure.update_layout(title=f"Harm pruning on {model_name}: rise of the held-out answer losses (48 harmful, 48 benign)",
                         xaxis_title="benign answer loss increase (nats per token)", yaxis_title="harmful answer loss increase (nats per token)",
                         template="plotly_white", width=1000, height=680, margin=dict(b=170), legend=dict(orientation="h", y=-0.16))  # fmt: skip
    return figure


def recognition_figure(summary: dict) -> go.Figure:
    layers = summary["layers"]
    figure = go.Figure()
    styles = {"unpruned": ("unpruned model", "#1f77b4", "solid"), "set_difference_frozen": ("set-difference mask, unpruned probes (frozen)", "#d62728", "solid"),
              "set_difference_retrained": ("set-difference mask, probes retrained", "#d62728", "dot"),
              "random_frozen": ("random mask, unpruned probes (frozen)", "#7f7f7f", "solid"), "random_retrained": ("random mask, probes retrained", "#7f7f7f", "dot")}  # fmt: skip
    for key, (name, color, dash) in styles.items():
        figure.add_trace(go.Scatter(x=layers["layer"], y=layers[key], name=name, mode="lines+markers", line=dict(color=color, dash=dash)))
    figure.add_hline(y=0.5, line=dict(color="grey", dash="dash"), annotation_text="chance")
    mask = summary["mask"]
    figure.update_layout(title=f"Is harm still recognised after pruning? Held-out AUROC of h_last probes ({mask['method']} {mask['label']})",
                         xaxis_title="site (embed, then resid_post of each layer)", yaxis_title="held-out AUROC, harmful vs benign",
                         xaxis=dict(type="category"), yaxis=dict(range=[0.1, 1.02]), template="plotly_white", width=1100, height=640, margin=dict(b=170),
                         legend=dict(orientation="h", y=-0.25))  # fmt: skip
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/real_harm_pruning"))
    parser.add_argument("--methods", nargs="+", default=["signed_snip", "snip", "wanda"])
    parser.add_argument("--skip-recognition", action="store_true")
    parser.add_argument("--model", choices=sorted(FINDINGS), default="smollm2-135m-instruct")
    args = parser.parse_args()
    global TOML, HERE
    TOML, HERE = FINDINGS[args.model]
    model = load_config(TOML).load_model()
    results = sweep(model, args.methods, args.out)
    rows = loss_table(results)
    choice = chosen(rows)
    print(f"{'method':<12} {'setting':<28} {'% pruned':>8} {'harm loss +':>11} {'benign loss +':>13} {'judged harmful':>14} {'keyword rule':>12}")
    for row in rows:
        print(f"{row['method']:<12} {row['label']:<28} {100 * row['fraction']:8.3f} {row['harm_loss_change']:11.3f} {row['benign_loss_change']:13.3f} "
              f"{100 * row['harm_judge_rate']:13.1f}% {100 * row['harm_keyword_rate']:11.1f}%")  # fmt: skip
    print(f"chosen mask: {choice['method']} {choice['label']}")
    completions = {name: json.loads((args.out / "completions" / name / "provenance.json").read_text())["extra"]
                   for name in ("harmful", "benign", "evaluation_harmful_pairs", "evaluation_benign_pairs")}  # fmt: skip
    summary = {"model": args.model, "model_source": str(load_config(TOML).model), "weights_hash": weights_hash(model), "points": rows, "chosen": choice,
               "completions": {name: {key: extra[key] for key in ("n", "max_new_tokens", "seconds", "completions_per_second")} for name, extra in completions.items()},
               "judge_validation": judge_agreement()}  # fmt: skip
    sample_path = args.out / "judge_sample.jsonl"
    sample_path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in validation_sample(results, choice)), encoding="utf-8")
    print(f"answers to label by hand: {sample_path}; judge vs hand labels: {summary['judge_validation']}")
    if not args.skip_recognition:
        summary["recognition"] = recognition(model, results, choice, args.out)
        atomic_write_figure(args.out / "recognition.html", recognition_figure(summary["recognition"]))
        screenshot(args.out / "recognition.html", HERE / "recognition.png")
    HERE.mkdir(exist_ok=True)
    atomic_write_json(HERE / "results.json", summary)
    atomic_write_figure(args.out / "losses.html", losses_figure(rows, args.model))
    screenshot(args.out / "losses.html", HERE / "losses.png")


if __name__ == "__main__":
    main()
