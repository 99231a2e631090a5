"""Which positions carry Qwen2.5-Coder-0.5B-Instruct's refusal decision: activation patching, harmful into benign.

    python circuits/refusal_lens_qwen/refusal_patching_qwen.py [--pairs 32] [--out runs/refusal_patching_qwen]

1. Candidates: AdvBench behaviours after the refusal direction's training and scoring sets (the evaluation order
   of ``circuits/refusal_direction_qwen/refusal_direction_qwen.py``) and the held-out benign requests, in the chat template. Kept: the
   harmful requests whose answer's most likely first token is a refusal start ("I", "Sorry", "As") and the benign
   requests whose is not.
2. Pairs: each kept harmful request with a kept benign request of the same token length (each used once), so the
   runs line up position by position: the shared system-prompt prefix, the user's instruction, and the template's
   five post-instruction tokens (``<|im_end|>``, ``\\n``, ``<|im_start|>``, ``assistant``, ``\\n``).
3. ``interp.activation_patching`` on ``resid_pre`` of every layer and position, denoising (the harmful run's
   residual stream written into the benign run), one call per token length; the metric is the refusal score at the
   last position, log(p / (1 - p)) with p the probability of the refusal starts (Arditi et al. 2024). Each length
   group is saved under ``--out/groups`` and skipped on a rerun (resumable).
4. Per layer, the share of the harmful-minus-benign refusal score restored by patching one position: each of the
   five post-instruction tokens, the instruction's last token, and its best other token. ``results.json`` and
   ``patching_by_layer.png`` go to ``circuits/refusal_lens_qwen/``; the heatmap of the largest length group (every
   position, hover with the tokens of its first pair) to ``--out``.
"""

import argparse
import time
from collections import defaultdict
from pathlib import Path

import plotly.graph_objects as go
import torch

from interp.data import PromptSet, tokenize_prompts
from interp.directions import chat_format, refusal_token_ids
from interp.directions.find import last_log_probs, refusal_scores
from interp.directions.prompts import PLACEHOLDER, post_instruction_tokens
from interp.io import atomic_write_figure, atomic_write_json
from interp.model import load_model
from interp.patching import RESULT_FILES, PatchingResult, activation_patching
from interp.plots import screenshot
from refusal_lens_qwen import REFUSAL_STARTS, evaluation_sets  # this folder's logit-lens script: the same prompts

MODEL = "qwen2.5-coder-0.5b-instruct"
HERE = Path(__file__).resolve().parent


def candidates() -> tuple[PromptSet, PromptSet]:
    """Every AdvBench behaviour not used to find the refusal direction, and every held-out benign request."""
    return evaluation_sets(10_000)


def pair_by_length(harmful: list[torch.Tensor], benign: list[torch.Tensor], n_pairs: int) -> dict[int, list[tuple[int, int]]]:
    """Index pairs (harmful, benign) of equal token length, grouped by length; each benign request used once."""
    free: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(benign):
        free[len(ids)].append(index)
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    n = 0
    for index, ids in enumerate(harmful):
        if n == n_pairs:
            break
        if free[len(ids)]:
            groups[len(ids)].append((index, free[len(ids)].pop(0)))
            n += 1
    return dict(sorted(groups.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=32, help="harmful/benign pairs of equal token length")
    parser.add_argument("--out", type=Path, default=Path("runs/refusal_patching_qwen"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    model = load_model(MODEL, device="cpu")
    tokenizer = model.tokenizer
    ids, token_strings = refusal_token_ids(tokenizer, REFUSAL_STARTS)

    def refusal_score(logits: torch.Tensor) -> torch.Tensor:
        return refusal_scores(torch.log_softmax(logits[:, -1].double(), dim=-1), ids)

    harmful_all, benign_all = (chat_format(tokenizer, prompts) for prompts in candidates())
    kept = {}
    for name, prompts, refuses in (("harmful", harmful_all, True), ("benign", benign_all, False)):
        tokens = tokenize_prompts(model, prompts)
        top1 = last_log_probs(model, tokens, batch_size=32).argmax(-1)
        keep = [i for i, token in enumerate(top1.tolist()) if (token in ids) == refuses]
        kept[name] = (prompts.select(keep), [tokens[i] for i in keep])
        print(f"{name}: {len(keep)} of {len(prompts)} kept (refusal start top-1: {refuses})")
    groups = pair_by_length(kept["harmful"][1], kept["benign"][1], args.pairs)
    n_pairs = sum(len(pairs) for pairs in groups.values())
    print(f"{n_pairs} pairs in {len(groups)} token lengths: {{length: pairs}} = { {k: len(v) for k, v in groups.items()} }")

    prefix_text = tokenizer.apply_chat_template([{"role": "user", "content": PLACEHOLDER}], tokenize=False, add_generation_prompt=True)
    n_prefix = len(tokenizer(prefix_text.split(PLACEHOLDER, 1)[0], add_special_tokens=False)["input_ids"])
    suffix = [tokenizer.convert_tokens_to_string([token]) for token in post_instruction_tokens(tokenizer)]  # "Ċ" -> "\n"
    columns = ["instruction: best other token", "instruction: last token", *[f"post-instruction {i + 1}: {t!r}" for i, t in enumerate(suffix)]]
    n_layers = int(model.cfg.n_layers)
    weighted = torch.zeros(n_layers, len(columns), dtype=torch.float64)
    clean_sum = corrupt_sum = 0.0
    largest: PatchingResult | None = None
    for length, pairs in groups.items():
        directory = args.out / "groups" / f"length_{length}"
        if (directory / RESULT_FILES[0]).exists():  # the meta file, written last
            result = PatchingResult.load(directory)
        else:
            clean = torch.stack([kept["harmful"][1][h] for h, _ in pairs])
            corrupt = torch.stack([kept["benign"][1][b] for _, b in pairs])
            result = activation_patching(model, clean, corrupt, refusal_score, site="resid_pre", by_position=True, direction="denoising")
            result.save(directory)
            print(f"length {length}: {len(pairs)} pairs, harmful {result.clean_metric:.2f}, benign {result.corrupt_metric:.2f}, "
                  f"{time.time() - start:.0f} s")  # fmt: skip
        values = result.values.double()  # [layer, pos]
        instruction = values[:, n_prefix : length - len(suffix) - 1]
        best_other = instruction.max(-1).values if instruction.shape[1] else torch.full((n_layers,), result.corrupt_metric, dtype=torch.float64)
        aligned = torch.cat([best_other[:, None], values[:, length - len(suffix) - 1 :]], dim=1)
        weighted += len(pairs) * aligned
        clean_sum += len(pairs) * result.clean_metric
        corrupt_sum += len(pairs) * result.corrupt_metric
        if largest is None or len(pairs) > largest.n_prompts:
            largest = result
    harmful_score, benign_score = clean_sum / n_pairs, corrupt_sum / n_pairs
    restored = (weighted / n_pairs - benign_score) / (harmful_score - benign_score)
    summary = {
        "model": MODEL, "site": "resid_pre", "direction": "denoising (harmful into benign)", "metric": "refusal score at the last position",
        "refusal_tokens": list(token_strings), "n_pairs": n_pairs, "pairs_per_length": {str(k): len(v) for k, v in groups.items()},
        "kept": {name: len(value[0]) for name, value in kept.items()},
        "harmful_refusal_score": round(harmful_score, 3), "benign_refusal_score": round(benign_score, 3),
        "columns": columns, "restored_share": [[round(float(v), 3) for v in row] for row in restored],
        "seconds": round(time.time() - start, 1),
    }  # fmt: skip
    atomic_write_json(HERE / "patching.json", summary)
    layers = list(range(n_layers))
    figure = go.Figure(go.Heatmap(z=restored.T.tolist(), x=layers, y=columns, colorscale="RdBu", zmid=0, zmin=-1, zmax=1,
                                  colorbar={"title": "share restored"},
                                  hovertemplate="layer %{x}<br>%{y}<br>share of the refusal score restored: %{z:.2f}<extra></extra>"))  # fmt: skip
    figure.update_layout(title=f"Patching one position of resid_pre from a harmful into a benign request ({n_pairs} pairs)",
                         xaxis_title="layer (resid_pre)", yaxis_title="position patched", height=500, width=1100)  # fmt: skip
    atomic_write_figure(args.out / "patching_by_layer.html", figure)
    screenshot(args.out / "patching_by_layer.html", HERE / "patching_by_layer.png", "1100,500")
    if largest is not None:
        atomic_write_figure(args.out / "largest_group.html", largest.normalized().figure())
    for layer in layers:
        print(layer, " ".join(f"{v:6.2f}" for v in restored[layer].tolist()))
    print(f"harmful {harmful_score:.2f} benign {benign_score:.2f}; done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
