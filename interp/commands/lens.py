"""``interp lens``: the logit lens over a model's prompts or a cached store."""

import argparse
from pathlib import Path

from interp import defaults
from interp.commands.common import add_model_arguments, add_prompt_arguments, add_subcommand, load_model_from_args, load_prompts_from_args, parse_positions
from interp.errors import InterpError


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "lens",
        run,
        help="Logit lens: decode every layer's residual stream; writes lens.html, lens.csv, lens.json, lens.safetensors.",
        example="interp lens --model organism --prompts prompts.jsonl --target ' refuse' --positions last --out lens_out",
    )
    add_model_arguments(parser)
    parser.add_argument("--prompts", type=Path, default=None, help="prompt file (with --model)")
    parser.add_argument("--store", type=Path, default=None, help="read activations from this store instead of running a model")
    parser.add_argument("--target", action="append", default=None, help="target token (repeat once per prompt, or give one for all); default: the model's own final prediction")
    parser.add_argument("--sites", default=",".join(defaults.LENS_SITES), help="comma-separated residual sites (resid_pre, resid_mid, resid_post)")
    parser.add_argument("--positions", default=defaults.LENS_POSITIONS, help="'last', 'all' or comma-separated positions")
    parser.add_argument("--top-k", type=int, default=defaults.LENS_TOP_K)
    parser.add_argument("--metric", default=defaults.LENS_METRIC, choices=sorted(defaults.LENS_METRICS), help="what the figure shows")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    add_prompt_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from interp.io import atomic_write_figure
    from interp.lens import logit_lens

    sites = [s for s in args.sites.split(",") if s.strip()]
    targets = None if not args.target else (args.target[0] if len(args.target) == 1 else args.target)
    if args.store is not None:
        from interp.store import ActivationStore

        result = logit_lens(ActivationStore.open(args.store), targets=targets, sites=sites, top_k=args.top_k)
    else:
        if args.prompts is None:
            raise InterpError("give --prompts FILE (with --model) or --store DIR.")
        model = load_model_from_args(args)
        prompts = load_prompts_from_args(args, model)
        result = logit_lens(model, prompts, targets=targets, sites=sites, positions=parse_positions(args.positions), top_k=args.top_k)
    result.save(args.out)
    atomic_write_figure(args.out / "lens.html", result.figure(metric=args.metric))
    print(f"logit lens over {len(result.sites)} sites x {len(result.prompts)} prompts written to {args.out} (figure: {args.out / 'lens.html'})")
    return 0
