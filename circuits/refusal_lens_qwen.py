"""Where Qwen2.5-Coder-0.5B-Instruct decides to refuse, layer by layer: the logit lens on harmful and benign requests.

    python circuits/refusal_lens_qwen.py [--n 32] [--out runs/refusal_lens_qwen]

``--n`` AdvBench behaviours (the evaluation set of ``circuits/refusal_direction_qwen.py``: never used to find
the direction) and ``--n`` held-out benign requests, in the chat template. ``interp.logit_lens`` reads
``resid_post`` of every layer at the template's last token (where the answer starts) through the final norm and
the unembedding. Per layer: the mean probability of the refusal-start tokens ("I", "Sorry", "As"), the share of
prompts whose top-1 token is a refusal start, and, for the prompts whose final answer starts with one, the first
layer from which it stays the top-1 token.

Writes ``results.json`` here and the figure as ``refusal_lens_qwen/refusal_by_layer.png``.
"""

import argparse
import random
import time
from pathlib import Path

import plotly.graph_objects as go
import torch

from interp.data import PromptSet
from interp.directions import chat_format, read_instructions, refusal_token_ids, split_instructions
from interp.io import atomic_write_figure, atomic_write_json
from interp.lens import logit_lens
from interp.model import load_model
from interp.plots import screenshot

MODEL = "qwen2.5-coder-0.5b-instruct"
ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "circuits" / "refusal_lens_qwen"
ADVBENCH = ROOT / "assets" / "prompts" / "advbench" / "advbench.txt"
BENIGN = ROOT / "assets" / "prompts" / "benign_instructions.jsonl"
N_TRAIN, N_VAL = 64, 16  # the direction's training and scoring sets come first in AdvBench's seeded order


def prompts(n: int) -> PromptSet:
    advbench = read_instructions(ADVBENCH, label="harmful")
    order = list(range(len(advbench)))
    random.Random(1).shuffle(order)
    _, benign_held = split_instructions(read_instructions(BENIGN, label="benign"))
    start = N_TRAIN + N_VAL
    return PromptSet(advbench.select(order[start : start + n]).records + benign_held.select(range(n)).records, "advbench eval + benign heldout")


def first_stable_layer(is_refusal_top: torch.Tensor) -> int | None:
    """The first layer index from which every later layer's top-1 token is a refusal start (None: not at the last layer)."""
    if not bool(is_refusal_top[-1]):
        return None
    layer = len(is_refusal_top) - 1
    while layer > 0 and bool(is_refusal_top[layer - 1]):
        layer -= 1
    return layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="prompts per class")
    parser.add_argument("--out", type=Path, default=Path("runs/refusal_lens_qwen"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    model = load_model(MODEL, device="cpu")
    formatted = chat_format(model.tokenizer, prompts(args.n))
    ids, token_strings = refusal_token_ids(model.tokenizer, ("I", "Sorry", "As"))
    sites = [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    result = logit_lens(model, formatted, targets="I", sites=sites, positions="last", top_k=1, batch_size=16)
    harmful = torch.tensor([label == "harmful" for label in formatted.labels])
    last = result.valid.long().cumsum(-1).argmax(-1)  # each prompt's last valid position
    rows = torch.arange(len(formatted))
    top1 = result.top_ids[:, rows, last, 0]  # [site, prompt]
    refusal_top = torch.isin(top1, torch.tensor(ids))
    p_i = result.target_prob[:, rows, last]  # [site, prompt]
    layers = list(range(model.cfg.n_layers))
    summary = {"model": MODEL, "n_per_class": args.n, "refusal_tokens": list(token_strings), "layers": layers}
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
    summary["seconds"] = round(time.time() - start, 1)
    figure = go.Figure()
    for name in ("harmful", "benign"):
        figure.add_trace(go.Scatter(x=layers, y=summary[name]["mean_p_I"], mode="lines+markers", name=f"{name}: mean P('I')",
                                    hovertext=[f"layer {layer}" for layer in layers]))  # fmt: skip
        figure.add_trace(go.Scatter(x=layers, y=summary[name]["share_top1_refusal_start"], mode="lines", line={"dash": "dot"},
                                    name=f"{name}: share with a refusal start as top-1"))  # fmt: skip
    figure.update_layout(title="Logit lens at the answer's first position, Qwen2.5-Coder-0.5B-Instruct",
                         xaxis_title="layer (resid_post)", yaxis_title="probability / share of prompts")  # fmt: skip
    atomic_write_json(HERE / "results.json", summary)
    atomic_write_figure(args.out / "refusal_by_layer.html", figure)
    screenshot(args.out / "refusal_by_layer.html", HERE / "refusal_by_layer.png", "1200,700")
    for name in ("harmful", "benign"):
        print(name, {key: value for key, value in summary[name].items() if key != "first_stable_layer"})
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
