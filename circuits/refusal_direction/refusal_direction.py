"""The refusal direction of Arditi et al. 2024 on SmolLM2-135M-Instruct: candidates, selection, what it does.

    python circuits/refusal_direction/refusal_direction.py [--out runs/refusal_direction]

1. ``--n-train`` AdvBench behaviours and as many benign requests (``assets/prompts/benign_instructions.jsonl``,
   split "train"), in the chat template: the difference of mean ``resid_pre`` at every layer and each of the
   6 post-instruction template tokens (``<|im_end|> \\n <|im_start|> ass istant \\n``) is a candidate.
2. Every candidate (6 positions x 30 layers) is scored (``interp.directions.find_directions``) on ``--n-val``
   other AdvBench behaviours and held-out benign requests: refusal score under ablation (harmful), under
   addition (benign), KL under ablation (benign). The sweep runs ``--layers-per-chunk`` layers per call and saves
   each chunk under ``--out/chunks/`` so a stopped run resumes; the chunks are merged and the selection redone.
3. Greedy completions (KV cache, batched) of held-out prompts: benign without and with the direction added,
   harmful without and with it ablated; refusal strings counted (Wei et al.'s list).
4. Hook ablation vs the orthogonalised weights, in place, on held-out prompts: max |logit difference|.

Writes the result (``DirectionResult.save``) to ``--out`` and, in this folder (the findings'), ``results.json``,
``completions.json`` and the figure as ``candidates.png``.
"""

import argparse
import math
import random
import time
from pathlib import Path

import torch

from interp.data import PromptSet, tokenize_prompts
from interp.directions import DirectionResult, ablated, added, chat_format, find_directions, merge_scores, orthogonalized, read_instructions, split_instructions
from interp.directions.find import last_log_probs
from interp.io import atomic_write_json
from interp.model import load_model
from interp.plots import screenshot
from interp.pruning.evaluate import generate_responses, has_refusal_string

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ADVBENCH = ROOT / "assets" / "prompts" / "advbench" / "advbench.txt"  # MIT; SOURCES.md there
BENIGN = ROOT / "assets" / "prompts" / "benign_instructions.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/refusal_direction"))
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-val", type=int, default=8)
    parser.add_argument("--n-show", type=int, default=4, help="completions shown per condition")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--layers-per-chunk", type=int, default=6, help="layers scored per resumable step")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    model = load_model("smollm2-135m-instruct", device="cpu")
    advbench = read_instructions(ADVBENCH, label="harmful")
    order = list(range(len(advbench)))
    random.Random(1).shuffle(order)
    harmful, val_harmful = advbench.select(order[: args.n_train]), advbench.select(order[args.n_train : args.n_train + args.n_val])
    benign_train, benign_held = split_instructions(read_instructions(BENIGN, label="benign"))
    benign, val_benign = benign_train.select(range(args.n_train)), benign_held.select(range(args.n_val))
    n_layers = model.cfg.n_layers
    common = dict(val_harmful=val_harmful, val_benign=val_benign, progress=True)
    result = None
    for first in range(0, n_layers, args.layers_per_chunk):
        layers = list(range(first, min(first + args.layers_per_chunk, n_layers)))
        chunk_dir = Path(args.out) / "chunks" / f"layers_{layers[0]:02d}_{layers[-1]:02d}"
        if (chunk_dir / "directions.json").exists():
            chunk = DirectionResult.load(chunk_dir)
        else:
            chunk = find_directions(model, harmful, benign, layers=layers, **common)
            chunk.save(chunk_dir)
        result = chunk if result is None else merge_scores(result, chunk)
        print(f"layers {layers[0]}..{layers[-1]} scored ({time.time() - start:.0f} s)", flush=True)
    print(result.summary())
    result.save(args.out)
    direction = result.direction

    # what the direction does to generation
    show_benign = chat_format(model.tokenizer, val_benign.select(range(args.n_show)))
    show_harmful = chat_format(model.tokenizer, val_harmful.select(range(args.n_show)))
    completions = {}
    for name, prompts, context in (
        ("benign", show_benign, None), ("benign + direction added", show_benign, lambda: added(model, direction)),
        ("harmful", show_harmful, None), ("harmful, direction ablated", show_harmful, lambda: ablated(model, direction)),
        ("benign + 2x direction added", show_benign, lambda: added(model, direction, alpha=2.0)),
    ):  # fmt: skip
        if context is None:
            texts = generate_responses(model, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.n_show)
        else:
            with context():
                texts = generate_responses(model, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.n_show)
        completions[name] = [{"instruction": record["text"].split("user\n", 1)[-1].split("<|im_end|>")[0], "completion": text,
                              "refusal_string": has_refusal_string(text)} for record, text in zip(prompts, texts)]  # fmt: skip
        print(f"\n== {name}: {sum(row['refusal_string'] for row in completions[name])}/{len(texts)} with a refusal string")
        for row in completions[name]:
            print(f"  {row['instruction'][:70]!r}\n    -> {row['completion'][:160]!r}")

    # hook ablation vs orthogonalised weights, in place, on the held-out prompts
    tokens = tokenize_prompts(model, chat_format(model.tokenizer, PromptSet(val_harmful.records + val_benign.records)))
    with ablated(model, direction):
        hooked = last_log_probs(model, tokens, 8)
    with orthogonalized(model, direction):
        weights = last_log_probs(model, tokens, 8)
    difference = float((hooked - weights).abs().max())
    print(f"\nhook ablation vs orthogonalised weights: max |log-prob difference| at the first generated position {difference:.2e}")

    def grid(values):
        return [[None if math.isnan(v) else round(v, 4) for v in row] for row in values.tolist()]

    summary = {
        "model": "smollm2-135m-instruct", "weights_hash": result.provenance.weights_hash, "counts": dict(result.counts),
        "refusal_tokens": list(result.refusal_tokens), "positions": list(result.position_labels),
        "layers_scored": list(range(n_layers)), "selection": result.selection,
        "chosen": {"layer": direction.layer, "position": direction.position_label, "norm": float(direction.vector.norm()), **result.scores()},
        "ablation_score": grid(result.ablation_score), "addition_score": grid(result.addition_score), "kl": grid(result.kl),
        "hook_vs_weights_max_logprob_diff": difference, "seconds": time.time() - start,
    }  # fmt: skip
    atomic_write_json(HERE / "results.json", summary)
    atomic_write_json(HERE / "completions.json", completions)
    screenshot(Path(args.out) / "directions.html", HERE / "candidates.png", "1340,1040")
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
