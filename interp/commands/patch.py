"""``interp patch``: activation / attribution patching of clean vs corrupt prompts, one result directory per method and site."""

import argparse
from pathlib import Path
from typing import Any

from interp import defaults
from interp.commands.common import (
    add_model_arguments,
    add_prompt_arguments,
    add_subcommand,
    load_model_from_args,
    load_prompts_from_args,
)
from interp.errors import InterpError
from interp.sites import PATCH_SITES, resolve_patch_site

EXAMPLE = (
    "interp patch --model organism --clean clean.jsonl --corrupt corrupt.jsonl "
    "--answer ' mary' --wrong ' john' --site resid_pre,attn_head_out --out patch_out"
)


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "patch",
        run,
        help="Activation / attribution patching: which layer, position and head carry a behaviour (figures + data per site).",
        example=EXAMPLE,
    )
    add_model_arguments(parser)
    budget = f"{defaults.PATCH_MEMORY_BUDGET_BYTES / 2**30:g} GiB"
    parser.add_argument("--clean", required=True, type=Path, help="clean prompts (.jsonl/.csv/.txt), one per line")
    parser.add_argument(
        "--corrupt", required=True, type=Path, help="corrupt prompts, same order and token length as --clean"
    )
    parser.add_argument(
        "--metric",
        default="logit_diff",
        choices=("logit_diff", "probability", "kl"),
        help="logit_diff needs --answer and --wrong; probability needs --answer; kl compares with the clean run's next-token distribution",
    )
    parser.add_argument(
        "--answer", default=None, help="the answer token (one token, same for every prompt), e.g. ' mary'"
    )
    parser.add_argument("--wrong", default=None, help="the wrong-answer token for logit_diff, e.g. ' john'")
    parser.add_argument(
        "--answer-field",
        default=None,
        help="read each prompt's answer token from this field of the --clean records instead of --answer",
    )
    parser.add_argument(
        "--wrong-field",
        default=None,
        help="read each prompt's wrong token from this field of the --clean records instead of --wrong",
    )
    parser.add_argument(
        "--site", default=defaults.PATCH_SITE, help=f"comma-separated sites: {', '.join(PATCH_SITES)}, or 'all'"
    )
    parser.add_argument(
        "--by-position",
        action=argparse.BooleanOptionalAction,
        default=defaults.PATCH_BY_POSITION,
        help="one cell per position (the default, as in activation_patching and a TOML run); --no-by-position: each cell patches every position",
    )
    parser.add_argument(
        "--direction",
        default=defaults.PATCH_DIRECTION,
        choices=defaults.PATCH_DIRECTIONS,
        help="denoising: clean activations into the corrupt run; noising: corrupt into clean",
    )
    parser.add_argument(
        "--method",
        default="activation",
        choices=("activation", "attribution", "both"),
        help="activation patching (exact), attribution patching (gradient estimate) or both",
    )
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="report (value - corrupt) / (clean - corrupt): 0 = corrupt run, 1 = clean run",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"most rows (cells x prompts) per forward (default: from a {budget} budget)",
    )
    parser.add_argument("--top", type=int, default=5, help="print this many most important cells per result")
    parser.add_argument(
        "--out", required=True, type=Path, help="output directory (one subdirectory per method and site)"
    )
    add_prompt_arguments(parser)


def _metric(args: argparse.Namespace, model, clean, clean_tokens) -> Any:
    """The metric the flags name, its answer tokens from the flags or from fields of the --clean records."""
    import torch

    from interp import metrics
    from interp.patching.inputs import model_device

    def tokens(flag_value: str | None, field_name: str | None, flag: str) -> Any:
        if field_name:
            return [str(value) for value in clean.field(field_name)]
        if flag_value is None:
            raise InterpError(f"--metric {args.metric} needs {flag} TOKEN (or {flag}-field FIELD).")
        return flag_value

    if args.metric == "logit_diff":
        return metrics.logit_diff(
            tokens(args.answer, args.answer_field, "--answer"),
            tokens(args.wrong, args.wrong_field, "--wrong"),
            tokenizer=model.tokenizer,
        )
    if args.metric == "probability":
        return metrics.probability(tokens(args.answer, args.answer_field, "--answer"), tokenizer=model.tokenizer)
    with torch.no_grad():
        reference = model(clean_tokens.to(model_device(model)))
    return metrics.kl_divergence(reference)


def run(args: argparse.Namespace) -> int:
    import torch

    from interp.io import safe_name
    from interp.metrics import normalized
    from interp.patching import activation_patching, attribution_patching_sites
    from interp.patching.inputs import model_device, pair_tokens

    model = load_model_from_args(args)
    clean = load_prompts_from_args(args, model, path=args.clean)
    corrupt = load_prompts_from_args(args, model, path=args.corrupt)
    clean_tokens, corrupt_tokens = pair_tokens(model, clean, corrupt)
    metric = _metric(args, model, clean, clean_tokens)
    if args.normalize:
        with torch.no_grad():
            metric = normalized(
                metric, model(clean_tokens.to(model_device(model))), model(corrupt_tokens.to(model_device(model)))
            )
    sites = (
        list(PATCH_SITES)
        if args.site.strip() == "all"
        else [part.strip() for part in args.site.split(",") if part.strip()]
    )
    for site in sites:
        resolve_patch_site(site)
    methods = ("activation", "attribution") if args.method == "both" else (args.method,)
    results = []
    if "attribution" in methods:
        results.extend(
            attribution_patching_sites(
                model, clean_tokens, corrupt_tokens, metric, sites, args.by_position, args.direction
            ).values()
        )
    if "activation" in methods:
        for site in sites:
            results.append(
                activation_patching(
                    model, clean_tokens, corrupt_tokens, metric, site, args.by_position, args.direction, args.batch_size
                )
            )
    for result in results:
        directory = result.save(args.out / safe_name(f"{result.method}_{result.site}", what="site"))
        top = ", ".join(f"{cell.label} ({cell.effect:+.3g})" for cell in result.top(args.top))
        print(
            f"{result.method} {result.site}: clean {result.clean_metric:.4g}, corrupt {result.corrupt_metric:.4g}; top: {top} -> {directory}"
        )
    return 0
