"""``interp demo``: the analyses end to end on one model, written as one offline HTML report
(``interp.demo.run_demo``)."""

import argparse
from pathlib import Path

from interp import defaults
from interp.commands.common import add_subcommand


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "demo",
        run,
        "Run the analyses end to end and write one HTML report: on the bundled organism its planted mechanisms, "
        "on a pretrained model the known ones (logit lens, direct logit attribution, induction heads, IOI head "
        "patching).",
        "interp demo --out out/demo            # then open out/demo/index.html\n"
        "  interp demo --model smollm2-135m-instruct --out out/demo_smollm2",
    )
    parser.add_argument(
        "--model",
        default=defaults.MODEL,
        help="'organism', a registered name (smollm2-135m-instruct), a local Hugging Face directory or a hub id",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(defaults.DEMO_OUT),
        help="output directory (index.html, summary.json, one folder per stage)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--quick", action="store_true", help="fewer prompts and rollouts (for a smoke test)")


def run(args: argparse.Namespace) -> int:
    from interp.demo import run_demo

    path = run_demo(args.model, args.out, device=args.device, quick=args.quick)
    print(f"wrote {path}")
    return 0
