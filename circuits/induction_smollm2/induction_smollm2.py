"""Induction heads in SmolLM2-135M-Instruct: copying, per-head induction scores, and mean-ablation of the top heads.

    python circuits/induction_smollm2/induction_smollm2.py [--out runs/induction_smollm2] [--n-sequences 32] [--length 50] [--n-random 10]

On ``n_sequences`` rows of ``[BOS, r_1 .. r_L, r_1 .. r_L]`` (``L = length`` tokens drawn uniformly
from the vocabulary without its special tokens, seed 0), ``interp.mechanisms.induction.induction_heads``
measures the loss on the first occurrence and on the repeat, every head's induction score
(attention from each repeat token to the token after its previous occurrence), and the repeat's
loss with the top-5 heads mean-ablated (``hook_z`` set to its mean over these sequences and
positions) against ``n_random`` draws of 5 other heads from the same layers.

Resumable: the result is saved to ``--out`` beside its ``config.json``; a rerun with the same
settings loads it instead of computing it again. ``--findings`` (default ``circuits/induction_smollm2``)
gets ``results.json`` (the numbers) and ``induction.html`` (the figure; plotly.js from its CDN,
the copy in ``--out`` inlines it).
"""

import argparse
import json
import time
from pathlib import Path

import torch

from interp.directories import saved_result, write_record
from interp.io import atomic_write_json, atomic_write_text
from interp.mechanisms.induction import InductionResult, induction_heads
from interp.model import load_model

MODEL = "smollm2-135m-instruct"
TARGETS = {"loss_ratio_max": 0.30, "ablation_ratio_min": 2.0}


def main(argv: list[str] | None = None) -> InductionResult:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/induction_smollm2"), help="the result's directory (resumable)")
    parser.add_argument("--findings", type=Path, default=Path(__file__).resolve().parent, help="where results.json and induction.html go")
    parser.add_argument("--n-sequences", type=int, default=32)
    parser.add_argument("--length", type=int, default=50, help="random tokens per half")
    parser.add_argument("--top-k", type=int, default=5, help="induction heads ablated together")
    parser.add_argument("--n-random", type=int, default=10, help="random same-layer draws ablated as controls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    record = {"model": MODEL, "n_sequences": args.n_sequences, "length": args.length, "top_k": args.top_k,
              "n_random": args.n_random, "seed": args.seed}  # fmt: skip
    result = saved_result(args.out, record, InductionResult.load)
    seconds = 0.0
    if result is None:
        model = load_model(MODEL, device="cpu")
        began = time.perf_counter()
        result = induction_heads(model, n_sequences=args.n_sequences, length=args.length, seed=args.seed, top_k=args.top_k,
                                 n_random=args.n_random, batch_size=args.batch_size, progress=True)  # fmt: skip
        seconds = time.perf_counter() - began
        result.save(args.out)
        write_record(args.out, record)
    else:
        print(f"loaded the saved result from {args.out}")
        previous = args.findings / "results.json"
        if previous.is_file() and json.loads(previous.read_text()).get("settings") == record:
            seconds = json.loads(previous.read_text()).get("seconds") or 0.0  # the time of the run that computed it

    summary = result.summary(k=10)
    checks = {"loss_ratio": summary["loss_ratio"] <= TARGETS["loss_ratio_max"], "ablation_ratio": summary["ablation_ratio"] >= TARGETS["ablation_ratio_min"]}
    atomic_write_json(args.findings / "results.json", {"settings": record, "targets": TARGETS, "checks": checks, "summary": summary,
                                                       "seconds": round(seconds, 1) or None, "provenance": result.provenance.to_dict()})  # fmt: skip
    atomic_write_text(args.findings / "induction.html", result.figure().to_html(include_plotlyjs="cdn", full_html=True))

    print(f"\n{MODEL}: {args.n_sequences} sequences x 2 x {args.length} random tokens, seed {args.seed}")
    print(f"loss first {summary['loss_first']:.3f}, repeat {summary['loss_repeat']:.3f} nats: ratio {summary['loss_ratio']:.3f} "
          f"(target <= {TARGETS['loss_ratio_max']})")  # fmt: skip
    print("top heads: " + ", ".join(f"L{h['layer']}H{h['head']} {h['score']:.3f}" for h in summary["top_heads"]))
    print(f"mean-ablating the top {args.top_k}: repeat loss +{summary['increase_top']:.3f} nats; {args.n_random} random same-layer draws: "
          f"+{summary['increase_random']:.3f} on average ({', '.join(f'{v:+.3f}' for v in summary['increase_random_draws'])})")  # fmt: skip
    print(f"ratio {summary['ablation_ratio']:.1f}x (target >= {TARGETS['ablation_ratio_min']}x); checks: {json.dumps(checks)}")
    return result


if __name__ == "__main__":
    main()
