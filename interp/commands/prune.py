"""``interp prune``: one set-difference mask from two files, evaluated against a random control.

The experiment is a one-point ``HarmPruningConfig`` run by ``interp.experiments.run_experiment``,
so it resumes like ``interp run`` when rerun with the same ``--out``; flag defaults are the
library's (``interp.defaults``).
"""

import argparse
from pathlib import Path

from interp import defaults
from interp.commands.common import add_model_arguments, add_subcommand
from interp.errors import InterpError

EXAMPLE = (
    "interp prune --model organism --harmful harmful.jsonl --benign benign.jsonl "
    "--method signed_snip --p 0.01 --q 0.01 --out runs/prune"
)


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "prune",
        run,
        help="Score decoder weights on harmful and benign responses, prune the set difference, and measure harm and utility.",
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
    parser.add_argument(
        "--method", default=defaults.PRUNE_METHOD, choices=defaults.PRUNE_METHODS, help="importance score"
    )
    parser.add_argument(
        "--p",
        type=float,
        default=defaults.PRUNE_P,
        help="fraction of each matrix protected by the benign score, in (0, 1]",
    )
    parser.add_argument(
        "--q",
        type=float,
        default=defaults.PRUNE_Q,
        help="fraction of each matrix selected by the harm score, in (0, 1]",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output directory (scores, mask, result); rerun to resume"
    )
    parser.add_argument("--n-samples", type=int, default=defaults.PRUNE_N_SAMPLES, help="examples per score")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.PRUNE_BATCH_SIZE,
        help="examples per forward/backward pass when scoring (on the CPU also at most a token budget; the scores do not depend on either)",
    )
    parser.add_argument(
        "--eval-harmful",
        type=Path,
        default=None,
        help="prompts for the harmful-compliance evaluation (default: the prompts of --harmful)",
    )
    parser.add_argument(
        "--judge",
        default="keyword",
        help="harm judge: 'keyword' (the reference refusal-string rule), a registered judge, or (with --allow-imports) 'module:function' f(record, response) -> bool",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=defaults.PRUNE_MAX_NEW_TOKENS,
        help="new tokens generated per evaluation prompt",
    )
    parser.add_argument(
        "--random-seeds",
        default=",".join(str(seed) for seed in defaults.PRUNE_RANDOM_SEEDS),
        help="comma-separated seeds of the random control masks ('' for none)",
    )
    parser.add_argument("--text-field", default="text", help="field holding the prompt")
    parser.add_argument("--response-field", default="response", help="field holding the response")
    parser.add_argument(
        "--allow-imports",
        action="store_true",
        help="let --judge be an import path 'module:function' (importing runs that module's code)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from interp.experiments import DatasetSpec, EvaluationConfig, HarmPruningConfig, run_experiment

    def spec(path: Path) -> DatasetSpec:
        if not path.exists():
            raise InterpError(f"file {path} does not exist.")
        return DatasetSpec(path=str(path.resolve()), text_field=args.text_field, response_field=args.response_field)

    try:
        seeds = tuple(int(part) for part in args.random_seeds.split(",") if part.strip())
    except ValueError:
        raise InterpError(f"--random-seeds must be comma-separated integers, got {args.random_seeds!r}.") from None
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
        save_masks=True,
    )
    result = run_experiment(config, args.out, progress=not args.quiet, allow_imports=args.allow_imports)
    print(result.summary())
    print(f"scores in {args.out / 'scores'}, masks in {args.out / 'masks'}, results in {args.out}")
    return 0
