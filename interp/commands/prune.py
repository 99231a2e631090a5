"""``interp prune``: one set-difference mask from two files, evaluated against a random control.

The experiment is a one-point ``HarmPruningConfig`` run by ``interp.experiments.run_experiment``,
so it resumes like ``interp run`` when rerun with the same ``--out``; its flags are that config's
fields (``interp.experiments.flags``).
"""

import argparse
from pathlib import Path

from interp.commands.common import add_model_arguments, add_subcommand
from interp.errors import InterpError
from interp.experiments.base import DatasetSpec
from interp.experiments.flags import Flag, add_config_flags
from interp.experiments.pruning import EvaluationConfig, HarmPruningConfig

# the flags of HarmPruningConfig's fields: one point of the sweep, so one p and one q
CONFIG_FLAGS = ("method", "p", "q", "n_samples", "batch_size", "random_seeds", "chat_template")
FLAGS = {"p": Flag(single=True), "q": Flag(single=True)}
EVALUATION_FLAGS = ("judge", "max_new_tokens")  # of its [evaluation] table
DATASET_FLAGS = ("text_field", "response_field")  # of the data-set tables of --harmful, --benign and --eval-harmful

EXAMPLE = (
    "interp prune --model organism --harmful harmful.jsonl --benign benign.jsonl "
    "--method signed_snip --p 0.01 --q 0.01 --out runs/prune"
)


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "prune",
        run,
        help="Score decoder weights on harmful and benign responses, prune the set difference, and measure harm and "
        "utility.",
        example=EXAMPLE,
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--harmful",
        required=True,
        type=Path,
        help="prompt + response file of the behaviour to remove (.jsonl/.csv with text and response fields)",
    )
    parser.add_argument("--benign", required=True, type=Path, help="prompt + response file of the behaviour to keep")
    add_config_flags(parser, HarmPruningConfig, CONFIG_FLAGS, FLAGS)
    parser.add_argument(
        "--out", required=True, type=Path, help="output directory (scores, mask, result); rerun to resume"
    )
    parser.add_argument(
        "--eval-harmful",
        type=Path,
        default=None,
        help="prompts for the harmful-compliance evaluation (default: the prompts of --harmful)",
    )
    add_config_flags(parser, EvaluationConfig, EVALUATION_FLAGS)
    add_config_flags(parser, DatasetSpec, DATASET_FLAGS)
    parser.add_argument(
        "--allow-imports",
        action="store_true",
        help="let --judge be an import path 'module:function' (importing runs that module's code)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_seeds(text: str) -> tuple[int, ...]:
    """The seeds of --random-seeds: comma-separated integers ('' for none)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InterpError(f"--random-seeds must be comma-separated integers, got {text!r}.") from None


def run(args: argparse.Namespace) -> int:
    from interp.experiments import run_experiment

    def spec(path: Path) -> DatasetSpec:
        if not path.exists():
            raise InterpError(f"file {path} does not exist.")
        return DatasetSpec(path=str(path.resolve()), text_field=args.text_field, response_field=args.response_field)

    seeds = parse_seeds(args.random_seeds)
    config = HarmPruningConfig(
        harmful=spec(args.harmful),
        benign=spec(args.benign),
        evaluation=EvaluationConfig(
            harmful=spec(args.eval_harmful or args.harmful),
            judge=args.judge,
            benign_pairs=spec(args.benign),
            max_new_tokens=args.max_new_tokens,
        ),
        name="prune",
        model=args.model,
        dtype=args.dtype,
        device=args.device,
        method=args.method,
        n_samples=args.n_samples,
        batch_size=args.batch_size,
        p=(args.p,),
        q=(args.q,),
        random_seeds=seeds,
        chat_template=args.chat_template,
        save_masks=True,
    )
    result = run_experiment(config, args.out, progress=not args.quiet, allow_imports=args.allow_imports)
    print(result.summary())
    print(f"scores in {args.out / 'scores'}, masks in {args.out / 'masks'}, results in {args.out}")
    return 0
