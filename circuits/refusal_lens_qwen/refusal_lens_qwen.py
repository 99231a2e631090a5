"""Where Qwen2.5-Coder-0.5B-Instruct decides to refuse, layer by layer: the logit and tuned lens on harmful and benign requests.

    python circuits/refusal_lens_qwen/refusal_lens_qwen.py [--n 32] [--tuned-lens runs/tuned_lens_qwen/lens] [--out runs/refusal_lens_qwen]

``--n`` AdvBench behaviours (the evaluation set of ``circuits/refusal_direction_qwen/refusal_direction_qwen.py``: never used to find
the direction) and ``--n`` held-out benign requests, in the chat template. ``interp.logit_lens`` reads
``resid_post`` of every layer at the template's last token (where the answer starts) through the final norm and
the unembedding. Per layer: the mean probability of "I" (the model's refusal start), the share of prompts whose
top-1 token is a refusal start ("I", "Sorry", "As"), for the prompts whose final answer starts with one the first
layer from which it stays the top-1 token, and the AUROC of P("I") for harmful against benign requests. With
``--tuned-lens`` (trained by ``python circuits/tuned_lens_smollm2/tuned_lens.py --model qwen2.5-coder-0.5b-instruct``) the same
numbers read through the tuned lens go under ``"tuned_lens"``.

Writes ``results.json`` and the figure as ``refusal_by_layer.png`` in this folder (the findings').
"""

import argparse
import time
from pathlib import Path

import plotly.graph_objects as go
import torch
from sklearn.metrics import roc_auc_score

from interp.data import PromptSet
from interp.demo.alignment import prompt_sets
from interp.directions import chat_format, refusal_token_ids
from interp.io import atomic_write_figure, atomic_write_json
from interp.lens import TunedLens, logit_lens
from interp.model import load_model
from interp.plots import screenshot

MODEL = "qwen2.5-coder-0.5b-instruct"
HERE = Path(__file__).resolve().parent
N_TRAIN, N_VAL = 64, 16  # the direction's training and scoring sets (seed 1) come first in AdvBench's seeded order
REFUSAL_STARTS = ("I", "Sorry", "As")  # the tokens a refusal of this model starts with


def evaluation_sets(n: int) -> tuple[PromptSet, PromptSet]:
    """The first ``n`` AdvBench behaviours not used to find the refusal direction, and the first ``n`` held-out benign requests."""
    sets = prompt_sets(N_TRAIN, N_VAL, n, seed=1)
    return sets["eval_harmful"], sets["eval_benign"]


def prompts(n: int) -> PromptSet:
    harmful, benign = evaluation_sets(n)
    return PromptSet(harmful.records + benign.records, "advbench eval + benign heldout")


def first_stable_layer(is_refusal_top: torch.Tensor) -> int | None:
    """The first layer index from which every later layer's top-1 token is a refusal start (None: not at the last layer)."""
    if not bool(is_refusal_top[-1]):
        return None
    layer = len(is_refusal_top) - 1
    while layer > 0 and bool(is_refusal_top[layer - 1]):
        layer -= 1
    return layer


def read_refusal(model, formatted: PromptSet, ids: tuple[int, ...], sites: list[str], translator) -> dict:
    """Per class, per layer: mean P("I"), the share of prompts with a refusal start as top-1, and where it settles;
    per layer, how well P("I") tells harmful from benign requests (AUROC)."""
    result = logit_lens(model, formatted, targets="I", sites=sites, positions="last", top_k=1, batch_size=16, translator=translator)
    harmful = torch.tensor([label == "harmful" for label in formatted.labels])
    last = result.valid.long().cumsum(-1).argmax(-1)  # each prompt's last valid position
    rows = torch.arange(len(formatted))
    top1 = result.top_ids[:, rows, last, 0]  # [site, prompt]
    refusal_top = torch.isin(top1, torch.tensor(ids))
    p_i = result.target_prob[:, rows, last]  # [site, prompt]
    summary = {"auroc_p_I": [round(float(roc_auc_score(harmful.numpy(), layer.numpy())), 3) for layer in p_i]}
    for name, mask in (("harmful", harmful), ("benign", ~harmful)):
        stable = [first_stable_layer(refusal_top[:, i]) for i in torch.nonzero(mask).flatten().tolist()]
        decided = [layer for layer in stable if layer is not None]
        summary[name] = {
            "mean_p_I": [round(float(v), 4) for v in p_i[:, mask].mean(-1)],
            "share_top1_refusal_start": [round(float(v), 4) for v in refusal_top[:, mask].float().mean(-1)],
            "final_top1_refusal_start": len(decided),
            "first_stable_layer": decided,
            "median_first_stable_layer": float(torch.tensor(decided, dtype=torch.float).median()) if decided else None,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="prompts per class")
    parser.add_argument("--out", type=Path, default=Path("runs/refusal_lens_qwen"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tuned-lens", type=Path, help="a tuned lens trained on this model (interp lens train / circuits/tuned_lens_smollm2/tuned_lens.py)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    model = load_model(MODEL, device="cpu")
    formatted = chat_format(model.tokenizer, prompts(args.n))
    ids, token_strings = refusal_token_ids(model.tokenizer, REFUSAL_STARTS)
    sites = [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    layers = list(range(model.cfg.n_layers))
    summary = {"model": MODEL, "n_per_class": args.n, "refusal_tokens": list(token_strings), "layers": layers}
    summary.update(read_refusal(model, formatted, ids, sites, translator=None))
    if args.tuned_lens is not None:
        summary["tuned_lens"] = read_refusal(model, formatted, ids, sites, translator=TunedLens.load(args.tuned_lens, model=model))
    summary["seconds"] = round(time.time() - start, 1)
    figure = go.Figure()
    for lens, numbers in (("logit lens", summary), ("tuned lens", summary.get("tuned_lens"))):
        for name in ("harmful", "benign") if numbers else ():
            figure.add_trace(go.Scatter(x=layers, y=numbers[name]["mean_p_I"], mode="lines+markers", name=f"{lens}, {name}: mean P('I')",
                                        line={"dash": "solid" if lens == "logit lens" else "dash"},
                                        hovertext=[f"layer {layer}" for layer in layers]))  # fmt: skip
    figure.update_layout(title="Logit and tuned lens at the answer's first position, Qwen2.5-Coder-0.5B-Instruct",
                         xaxis_title="layer (resid_post)", yaxis_title="probability / share of prompts")  # fmt: skip
    atomic_write_json(HERE / "results.json", summary)
    atomic_write_figure(args.out / "refusal_by_layer.html", figure)
    screenshot(args.out / "refusal_by_layer.html", HERE / "refusal_by_layer.png", "1200,700")
    for lens, numbers in (("logit lens", summary), ("tuned lens", summary.get("tuned_lens"))):
        for name in ("harmful", "benign") if numbers else ():
            print(lens, name, {key: value for key, value in numbers[name].items() if key != "first_stable_layer"})
        if numbers:
            print(lens, "AUROC of P('I'), harmful vs benign:", numbers["auroc_p_I"])
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
