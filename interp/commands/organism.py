"""``interp organism train`` and ``interp organism report``: thin wrappers over interp.organisms' train / evaluate."""

import argparse
import json
import sys
from pathlib import Path

from interp.commands.common import add_subcommand, writes_file

TRAIN_EXAMPLES = "\n  ".join(
    (
        "interp organism train --out out/organism              # the shipped organism, ~15 min on 2 cores",
        "interp organism train --out out/mini --mini           # a miniature model in seconds (smoke test)",
        "interp organism train --out out/organism --seed 1 --steps 3000 --minutes 8",
    )
)
REPORT_EXAMPLES = "\n  ".join(
    (
        "interp organism report                                # the shipped organism, 200 examples per metric",
        "interp organism report --model out/organism --n 50 --out report.json",
    )
)


def register(subparsers) -> None:
    """Add ``organism`` with its ``train`` and ``report`` subcommands; each sets ``handler``."""
    parser = add_subcommand(
        subparsers,
        "organism",
        None,
        help="Train or evaluate the bundled model organism.",
        example="interp organism report --n 50\n  interp organism train --out out/organism",
    )
    parser.description = "The bundled model organism: train it from scratch, or measure its planted behaviours."
    commands = parser.add_subparsers(dest="organism_command", metavar="{train,report}")

    train = add_subcommand(
        commands,
        "train",
        run_train,
        help="Train an organism from scratch (deterministic, CPU).",
        example=TRAIN_EXAMPLES,
    )
    train.description = (
        "Train the organism from scratch with a fixed seed and save it as a Hugging Face model "
        "directory with training.json (config, data hashes, measured report)."
    )
    train.add_argument("--out", type=Path, default=Path("out/organism"), help="output directory")
    train.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    train.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 2500; mini: 40)")
    train.add_argument(
        "--minutes", type=float, default=None, help="stop training after this many minutes (default: 14)"
    )
    train.add_argument("--mini", action="store_true", help="the miniature configuration (seconds; for tests)")
    train.add_argument(
        "--report-n",
        type=int,
        default=None,
        help="examples per metric for the report in training.json (0: skip; default 200, mini 10)",
    )
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 2)")
    train.add_argument(
        "--force", action="store_true", help="replace the model in an --out that is not empty (refused otherwise)"
    )

    report = add_subcommand(
        commands,
        "report",
        run_report,
        help="Measure induction, refusal/trigger and chain-of-thought behaviour as JSON.",
        example=REPORT_EXAMPLES,
    )
    report.description = (
        "Evaluate an organism on held-out data and print the report as JSON (exit code 1 if a target is missed)."
    )
    report.add_argument("--model", default="default", help="a bundled organism name or a model directory")
    report.add_argument("--n", type=int, default=200, help="examples per metric")
    report.add_argument("--seed", type=int, default=0, help="evaluation seed (which held-out examples, sampling)")
    report.add_argument("--out", type=Path, default=None, help="also write the JSON report to this file")


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``interp organism train``: prints where the model went and its training summary."""
    from interp.organisms.train import TrainConfig, train_organism

    overrides = {
        key: value
        for key, value in {
            "seed": args.seed,
            "steps": args.steps,
            "max_minutes": args.minutes,
            "threads": args.threads,
        }.items()
        if value is not None
    }
    config = TrainConfig.mini(**overrides) if args.mini else TrainConfig(**overrides)
    report_n = args.report_n if args.report_n is not None else (10 if args.mini else 200)
    out = train_organism(config, args.out, report_n=report_n, force=args.force)
    info = json.loads((out / "training.json").read_text())
    summary = {key: info[key] for key in ("steps_done", "train_seconds", "final_loss", "stopped_early")}
    if "report" in info:
        summary["checks"] = info["report"]["checks"]
    print(json.dumps({"out": str(out), **summary}, indent=2))
    return 0


@writes_file
def run_report(args: argparse.Namespace) -> int:
    """Handler of ``interp organism report``: prints the JSON report; exit code 1 if a target is missed."""
    from interp.io import atomic_write_json
    from interp.organisms.evaluate import organism_report

    report = organism_report(args.model, n=args.n, seed=args.seed)
    if args.out is not None:
        atomic_write_json(args.out, report)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0 if report["passed"] else 1
