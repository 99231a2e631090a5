"""``interp patch``: activation / attribution patching of clean vs corrupt prompts, one result directory per method and
site."""

import argparse
from pathlib import Path
from typing import Any

from interp.commands.common import (
    add_model_arguments,
    add_prompt_arguments,
    add_subcommand,
    load_model_from_args,
    load_prompts_from_args,
)
from interp.errors import InterpError
from interp.experiments.flags import add_config_flags, config_default, field_choices
from interp.experiments.patching import PatchingConfig
from interp.sites import PATCH_SITES, resolve_patch_site

# the flags of PatchingConfig's fields; its data sets are --clean / --corrupt FILE, and --site and --method
# take more than the config (several sites or 'all'; both methods), so they keep flags of their own
CONFIG_FLAGS = (
    "metric",
    "answer",
    "wrong",
    "answer_field",
    "wrong_field",
    "by_position",
    "direction",
    "normalize",
    "batch_size",
    "chat_template",
)

EXAMPLE = (
    "interp patch --model organism --clean clean.jsonl --corrupt corrupt.jsonl "
    "--answer ' mary' --wrong ' john' --site resid_pre,attn_head_out --out patch_out"
)


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "patch",
        run,
        help="Activation / attribution patching: which layer, position and head carry a behaviour (figures + data per "
        "site).",
        example=EXAMPLE,
    )
    add_model_arguments(parser)
    parser.add_argument("--clean", required=True, type=Path, help="clean prompts (.jsonl/.csv/.txt), one per line")
    parser.add_argument(
        "--corrupt", required=True, type=Path, help="corrupt prompts, same order and token length as --clean"
    )
    add_config_flags(parser, PatchingConfig, CONFIG_FLAGS)
    parser.add_argument(
        "--site",
        default=config_default(PatchingConfig, "site"),
        help=f"comma-separated sites: {', '.join(PATCH_SITES)}, or 'all'",
    )
    parser.add_argument(
        "--method",
        default=config_default(PatchingConfig, "method"),
        choices=(*(field_choices(PatchingConfig, "method") or ()), "both"),
        help="activation patching (exact), attribution patching (gradient estimate) or both",
    )
    parser.add_argument("--top", type=int, default=5, help="print this many most important cells per result")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output directory (one subdirectory per method and site; an earlier result of this command there is "
        "replaced)",
    )
    add_prompt_arguments(parser, chat_template=False)


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
    from interp.patching import PatchingResult, activation_patching, attribution_patching_sites
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
    results: list[PatchingResult] = []
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
            f"{result.method} {result.site}: clean {result.clean_metric:.4g}, corrupt {result.corrupt_metric:.4g}; "
            f"top: {top} -> {directory}"
        )
    return 0
