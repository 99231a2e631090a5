"""The refusal direction of Arditi et al. 2024 on Qwen2.5-Coder-0.5B-Instruct, a chat model that refuses.

    python circuits/refusal_direction_qwen/refusal_direction_qwen.py [--out runs/refusal_direction_qwen] [--sweep-only]

1. Training prompts: ``--n-train`` AdvBench behaviours (``assets/prompts/advbench``, seeded order) and as many
   benign requests of the "train" split of ``assets/prompts/benign_instructions.jsonl``, in the chat template
   (with the model's default system prompt). A candidate is the difference of mean ``resid_pre`` at each layer
   and each of the 5 post-instruction template tokens (``<|im_end|> \\n <|im_start|> assistant \\n``).
2. Every candidate is scored (``interp.directions.find_directions``) on ``--n-val`` other AdvBench behaviours
   and ``--n-val`` other "train" benign requests; ``--layers-per-chunk`` layers per call, each chunk saved under
   ``--out/chunks/`` so a stopped run resumes; the chunks are merged (``merge_scores``) and the selection redone.
3. Second stage of the selection (``rerank``): the ``--rerank`` candidates with the lowest ablation scores that pass
   the layer and KL filters, and the first stage's choice, judged by generation on the validation prompts (ablated on
   the harmful ones, added on the benign ones); chosen: the lowest refusal rate under ablation among those whose
   addition makes at least half of the benign requests refused.
4. Held-out evaluation (prompts never used above: ``--n-eval`` further AdvBench behaviours and the "heldout"
   benign split), greedy completions judged by ``interp.judges.refusal``, of both the first stage's and the chosen
   direction: the unmodified model; harmful and benign requests with the direction ablated (hooks); benign requests
   with it added at its layer. Hook ablation vs the orthogonalised weights in float64 (max |logit difference|,
   restored bit-exactly after); the orthogonalised model saved, reloaded with ``interp.load_model(dir)`` and its
   refusal rate on the held-out harmful requests.

Writes the result (``DirectionResult.save``) to ``--out`` (the evaluations under ``--out/evaluation/L{layer}_{position}/``,
the orthogonalised models there too), and ``results.json``, ``completions.jsonl`` (the chosen
direction's) and ``candidates.png`` in this folder (the findings'). Each step's output is saved as it finishes, so a rerun
with the same ``--out`` resumes.
"""

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from interp.data import PromptSet, tokenize_prompts
from interp.demo.alignment import prompt_sets
from interp.directions import (
    DirectionResult, RefusalDirection, ablated, added, chat_format, find_directions, merge_scores, orthogonalized,
    read_instructions, save_orthogonalized, split_instructions,
)  # fmt: skip
from interp.directions.find import last_log_probs
from interp.io import atomic_write_json
from interp.judges import refusal
from interp.model import load_model
from interp.plots import screenshot
from interp.pruning.evaluate import generate_responses

MODEL = "qwen2.5-coder-0.5b-instruct"
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ADVBENCH = ROOT / "assets" / "prompts" / "advbench" / "advbench.txt"
BENIGN = ROOT / "assets" / "prompts" / "benign_instructions.jsonl"


def judge_sample(model, args) -> None:
    """Greedy answers to AdvBench behaviours and benign requests outside every other set, for labelling by hand.

    Writes ``judge_sample.jsonl`` here (instruction, label, completion, the judge's verdict); the hand labels
    live in ``judge_validation.jsonl`` (the same rows with ``hand_refusal`` and a note).
    """
    advbench = read_instructions(ADVBENCH, label="harmful")
    order = list(range(len(advbench)))
    random.Random(1).shuffle(order)
    _, benign_held = split_instructions(read_instructions(BENIGN, label="benign"))
    half = args.judge_sample // 2
    prompts = PromptSet(advbench.select(order[-half:]).records + benign_held.select(range(len(benign_held) - half, len(benign_held))).records)
    rows = judged(model, prompts, args.max_new_tokens, args.batch_size)
    (HERE / "judge_sample.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def sweep(model, sets: dict[str, PromptSet], out: Path, layers_per_chunk: int, start: float) -> DirectionResult:
    """Every (position, layer) candidate scored, a chunk of layers per call, each chunk saved (resumable)."""
    result = None
    n_layers = model.cfg.n_layers
    for first in range(0, n_layers, layers_per_chunk):
        layers = list(range(first, min(first + layers_per_chunk, n_layers)))
        chunk_dir = out / "chunks" / f"layers_{layers[0]:02d}_{layers[-1]:02d}"
        if (chunk_dir / "directions.json").exists():
            chunk = DirectionResult.load(chunk_dir)
        else:
            begin = time.time()
            chunk = find_directions(model, sets["harmful"], sets["benign"], val_harmful=sets["val_harmful"],
                                    val_benign=sets["val_benign"], layers=layers, progress=True)  # fmt: skip
            chunk.save(chunk_dir)
            atomic_write_json(chunk_dir / "seconds.json", {"seconds": time.time() - begin, "threads": torch.get_num_threads()})
        result = chunk if result is None else merge_scores(result, chunk)
        print(f"layers {layers[0]}..{layers[-1]} scored ({time.time() - start:.0f} s)", flush=True)
    return result


def sweep_seconds(out: Path) -> dict[str, float]:
    """Seconds each saved chunk of the sweep took (written beside it when it was scored)."""
    return {path.parent.name: json.loads(path.read_text())["seconds"] for path in sorted((out / "chunks").glob("*/seconds.json"))}


def judged(model, prompts: PromptSet, max_new_tokens: int, batch_size: int) -> list[dict]:
    """Greedy completions of ``prompts`` (chat template) with the refusal judge's verdict on each."""
    texts = generate_responses(model, chat_format(model.tokenizer, prompts), max_new_tokens=max_new_tokens, batch_size=batch_size, progress=True)
    return [{"instruction": record["text"], "label": record["label"], "completion": text, "refusal": refusal(record, text)}
            for record, text in zip(prompts, texts)]  # fmt: skip


def conditions(model, direction: RefusalDirection, sets: dict[str, PromptSet]) -> dict[str, tuple]:
    """name -> (prompts, context manager factory or None) for the held-out evaluation."""
    return {
        "harmful": (sets["eval_harmful"], None),
        "benign": (sets["eval_benign"], None),
        "harmful, direction ablated": (sets["eval_harmful"], lambda: ablated(model, direction)),
        "benign, direction ablated": (sets["eval_benign"], lambda: ablated(model, direction)),
        "benign, direction added": (sets["eval_benign"], lambda: added(model, direction)),
    }


def evaluate(model, direction: RefusalDirection, sets: dict[str, PromptSet], out: Path, args) -> dict[str, list[dict]]:
    """Judged completions per condition, each saved under ``out/completions`` once generated (resumable)."""
    done = {}
    for name, (prompts, context) in conditions(model, direction, sets).items():
        path = out / "completions" / (name.replace(", ", "_").replace(" ", "_") + ".json")
        if path.exists():
            done[name] = json.loads(path.read_text())
            continue
        start = time.time()
        if context is None:
            rows = judged(model, prompts, args.max_new_tokens, args.batch_size)
        else:
            with context():
                rows = judged(model, prompts, args.max_new_tokens, args.batch_size)
        seconds = time.time() - start
        atomic_write_json(path, {"seconds": seconds, "rows": rows})
        done[name] = {"seconds": seconds, "rows": rows}
        print(f"{name}: {sum(row['refusal'] for row in rows)}/{len(rows)} refused ({seconds:.0f} s)", flush=True)
    return done


def hook_vs_weights(direction: RefusalDirection, sets: dict[str, PromptSet]) -> float:
    """Max |logit difference| between hook ablation and orthogonalised weights, in float64; weights restored bit-exactly."""
    model = load_model(MODEL, device="cpu", dtype="float32")
    model.to(torch.float64)
    prompts = chat_format(model.tokenizer, PromptSet(sets["eval_harmful"].records[:2] + sets["eval_benign"].records[:2]))
    tokens = tokenize_prompts(model, prompts)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    vector = direction.vector.double()
    with ablated(model, vector):
        hooked = last_log_probs(model, tokens, 4)
    with orthogonalized(model, vector):
        weights = last_log_probs(model, tokens, 4)
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), f"{name} was not restored bit-exactly"
    return float((hooked.double() - weights.double()).abs().max())


def label(direction: RefusalDirection) -> str:
    return f"L{direction.layer}_{direction.position}"


def rerank(model, result: DirectionResult, sets: dict[str, PromptSet], out: Path, args) -> tuple[RefusalDirection, list[dict]]:
    """Second stage of the selection, on generations of the validation prompts (never the held-out ones).

    The ``--rerank`` candidates with the lowest ablation scores among those below the layer filter with KL <= max_kl
    (the first-token refusal score is a proxy: "I" also starts compliant answers), plus the first stage's choice:
    each is ablated on the validation harmful requests and added at its layer on the validation benign ones, the
    answers judged. Chosen: the lowest refusal rate under ablation among those whose addition makes at least half of
    the benign requests refused (else among all); ties go to the lower ablation score. One file per candidate.
    """
    scored = [(float(result.ablation_score[p, layer]), p, layer) for p in range(len(result.positions)) for layer in range(result.max_layer)
              if math.isfinite(float(result.ablation_score[p, layer])) and float(result.kl[p, layer]) <= result.max_kl]  # fmt: skip
    picked = sorted(scored)[: args.rerank]
    if (result.chosen_position, result.chosen_layer) not in [(p, layer) for _, p, layer in picked]:
        picked.append((float(result.ablation_score[result.chosen_position, result.chosen_layer]), result.chosen_position, result.chosen_layer))
    rows = []
    for score, p, layer in picked:
        candidate = result.candidate(result.positions[p], layer)
        path = out / "rerank" / f"{label(candidate)}.json"
        if not path.exists():
            with ablated(model, candidate):
                harmful = judged(model, sets["val_harmful"], args.max_new_tokens, args.batch_size)
            with added(model, candidate):
                benign = judged(model, sets["val_benign"], args.max_new_tokens, args.batch_size)
            atomic_write_json(path, {
                "candidate": label(candidate), "position": candidate.position, "layer": layer, "position_label": candidate.position_label,
                "ablation_score": score, "addition_score": float(result.addition_score[p, layer]), "kl": float(result.kl[p, layer]),
                "ablated_refusal_rate": sum(row["refusal"] for row in harmful) / len(harmful),
                "added_refusal_rate": sum(row["refusal"] for row in benign) / len(benign),
            })  # fmt: skip
        rows.append(json.loads(path.read_text()))
        print(f"rerank {rows[-1]['candidate']}: ablated {rows[-1]['ablated_refusal_rate']:.0%} refused, added {rows[-1]['added_refusal_rate']:.0%}", flush=True)
    inducing = [row for row in rows if row["added_refusal_rate"] >= 0.5] or rows
    best = min(inducing, key=lambda row: (row["ablated_refusal_rate"], row["ablation_score"]))
    return result.candidate(best["position"], best["layer"]), rows


def held_out(model, direction: RefusalDirection, sets: dict[str, PromptSet], out: Path, args) -> dict:
    """The held-out evaluation of one direction: judged completions, hooks vs weights, the saved model reloaded."""
    completions = evaluate(model, direction, sets, out, args)
    rates = {name: sum(row["refusal"] for row in done["rows"]) / len(done["rows"]) for name, done in completions.items()}
    difference = hook_vs_weights(direction, sets)
    print(f"{label(direction)}: hook ablation vs orthogonalised weights (float64): max |log-prob difference| {difference:.2e}", flush=True)
    saved_dir = out / "orthogonalized_model"
    if not (saved_dir / "config.json").exists():
        save_orthogonalized(model, direction, saved_dir)
    path = out / "completions" / "orthogonalized_harmful.json"
    if not path.exists():
        begin = time.time()
        reloaded = load_model(saved_dir, device="cpu")
        atomic_write_json(path, {"seconds": time.time() - begin, "rows": judged(reloaded, sets["eval_harmful"], args.max_new_tokens, args.batch_size)})
        del reloaded
    reloaded_rows = json.loads(path.read_text())["rows"]
    rates["harmful, orthogonalised model reloaded"] = sum(row["refusal"] for row in reloaded_rows) / len(reloaded_rows)
    completions["harmful, orthogonalised model reloaded"] = {"rows": reloaded_rows}
    print(f"{label(direction)}: " + ", ".join(f"{name} {rate:.0%}" for name, rate in rates.items()), flush=True)
    return {"direction": label(direction), "layer": direction.layer, "position": direction.position_label, "norm": float(direction.vector.norm()),
            "refusal_rates": rates, "hook_vs_weights_max_logprob_diff_float64": difference, "completions": completions}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/refusal_direction_qwen"))
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-val", type=int, default=16)
    parser.add_argument("--n-eval", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layers-per-chunk", type=int, default=2, help="layers scored per resumable step")
    parser.add_argument("--rerank", type=int, default=8, help="candidates judged by generation on the validation prompts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sweep-only", action="store_true", help="stop after the candidate sweep")
    parser.add_argument("--judge-sample", type=int, default=0, help="only write this many answers (half harmful) for hand labels")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    model = load_model(MODEL, device="cpu")
    if args.judge_sample:
        return judge_sample(model, args)
    sets = prompt_sets(args.n_train, args.n_val, args.n_eval, seed=1)  # the demo's sets, in another seeded order
    result = sweep(model, sets, args.out, args.layers_per_chunk, start)
    result.save(args.out)
    print(result.summary(), flush=True)
    screenshot(args.out / "directions.html", HERE / "candidates.png", "1340,1040")
    if args.sweep_only:
        return
    first_stage = result.direction
    chosen, reranked = rerank(model, result, sets, args.out, args)
    evaluations = {name: held_out(model, direction, sets, args.out / "evaluation" / label(direction), args)
                   for name, direction in (("first stage (Arditi et al.'s filters)", first_stage), ("chosen", chosen))}  # fmt: skip

    def grid(values):
        return [[None if math.isnan(v) else round(v, 4) for v in row] for row in values.tolist()]

    timed = [done for evaluation in evaluations.values() for done in evaluation["completions"].values() if "seconds" in done]
    summary = {
        "model": MODEL, "weights_hash": result.provenance.weights_hash, "counts": {name: len(s) for name, s in sets.items()},
        "refusal_tokens": list(result.refusal_tokens), "positions": list(result.position_labels), "selection": result.selection,
        "first_stage": {"direction": label(first_stage), **result.scores()}, "rerank": reranked,
        "evaluations": {name: {key: value for key, value in evaluation.items() if key != "completions"} for name, evaluation in evaluations.items()},
        "ablation_score": grid(result.ablation_score), "addition_score": grid(result.addition_score), "kl": grid(result.kl),
        "baseline_harmful": result.baseline_harmful, "baseline_benign": result.baseline_benign,
        "sweep_seconds": sweep_seconds(args.out), "scoring": result.provenance.extra["directions"]["scoring"],
        "completions_per_second": sum(len(done["rows"]) for done in timed) / sum(done["seconds"] for done in timed),
        "max_new_tokens": args.max_new_tokens, "seconds_this_run": time.time() - start,
    }  # fmt: skip
    atomic_write_json(HERE / "results.json", summary)
    chosen_completions = evaluations["chosen"]["completions"]
    rows = [dict(row, condition=name) for name, done in chosen_completions.items() for row in done["rows"]]
    (HERE / "completions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(json.dumps(summary["evaluations"], indent=2))
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
