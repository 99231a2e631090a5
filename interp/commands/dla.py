"""``interp dla``: direct logit attribution per component and per head, and attention-pattern figures."""

import argparse
from pathlib import Path

from interp import defaults
from interp.commands.common import (
    add_model_arguments,
    add_prompt_arguments,
    add_subcommand,
    load_model_from_args,
    load_prompts_from_args,
    parse_positions,
)
from interp.errors import InterpError


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "dla",
        run,
        help="Direct logit attribution: each component's and head's direct effect on logit(answer) - logit(wrong); "
        "writes dla.html, dla.csv, dla.json, dla.safetensors.",
        example="interp dla --model smollm2-135m-instruct --prompt 'When Mary and John went to the store, John gave a "
        "drink to' --answer ' Mary' --wrong ' John' --pattern 23.3 --out dla_out",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--prompt", action="append", default=None, help="a prompt's text (repeat for more); or --prompts FILE"
    )
    parser.add_argument("--prompts", type=Path, default=None, help="prompt file (with --model)")
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="read the component sites from this store instead of running a model (per layer only: no heads)",
    )
    parser.add_argument(
        "--answer",
        action="append",
        default=None,
        help="the token whose logit is attributed, as text or id:123 (repeat once per prompt, or give one for all); "
        "default: the model's own prediction",
    )
    parser.add_argument(
        "--wrong",
        action="append",
        default=None,
        help="the token whose logit is subtracted (same forms); default: none, the plain logit",
    )
    parser.add_argument(
        "--positions",
        default=defaults.DLA_POSITIONS,
        help="'last' or comma-separated positions (negative count from each prompt's end)",
    )
    parser.add_argument(
        "--top-k", type=int, default=defaults.DLA_TOP_K, help="heads and components listed on the terminal"
    )
    parser.add_argument(
        "--pattern",
        action="append",
        default=None,
        metavar="LAYER.HEAD",
        help="also write the attention pattern of this head over the first prompt (repeatable): "
        "OUT/pattern_L{layer}H{head}/",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output directory (an earlier result of this command there is replaced)"
    )
    add_prompt_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from interp.mechanisms.attention import attention_pattern
    from interp.mechanisms.dla import direct_logit_attribution

    answer = _one_or_many(args.answer)
    wrong = _one_or_many(args.wrong)
    positions = parse_positions(args.positions)
    heads = [_parse_head(text) for text in args.pattern or []]
    if args.store is not None:
        from interp.store import ActivationStore

        source = ActivationStore.open(args.store)
        _check_heads(heads, source.n_layers, int(source.manifest["n_heads"]))
        result = direct_logit_attribution(source, answer=answer, wrong=wrong, positions=positions)
        first_prompt: int | str = 0
    else:
        if (args.prompts is None) == (args.prompt is None):
            raise InterpError(
                "give the prompts once: --prompt TEXT (repeatable) or --prompts FILE (with --model), or --store DIR."
            )
        source = load_model_from_args(args)
        if args.prompt is not None:
            from interp.data import PromptSet

            prompts = PromptSet.from_texts(args.prompt)
            prompts = prompts.apply_chat_template(source.tokenizer) if args.chat_template else prompts
        else:
            prompts = load_prompts_from_args(args, source)
        _check_heads(heads, int(source.cfg.n_layers), int(source.cfg.n_heads))
        result = direct_logit_attribution(source, prompts, answer=answer, wrong=wrong, positions=positions)
        first_prompt = prompts.texts[0]
    result.save(args.out)
    print(
        f"direct logit attribution to {result.metric} (mean {float(result.logit_diff[:, -1].mean()):.4g} over "
        f"{len(result.prompts)} prompts) written to {args.out} (figure: {args.out / 'dla.html'})"
    )
    if result.head_values is not None:
        print("top heads: " + ", ".join(f"{label} {value:+.3f}" for label, value in result.top(args.top_k)))
    print(
        "top components: "
        + ", ".join(f"{label} {value:+.3f}" for label, value in result.top(args.top_k, kind="component"))
    )
    for layer, head in heads:
        pattern = attention_pattern(source, first_prompt, layer, head)
        where = args.out / f"pattern_{pattern.label}"
        pattern.save(where)
        print(
            f"{pattern.label}: the last token attends to "
            + ", ".join(f"{token!r}@{pos} {weight:.2f}" for pos, token, weight in pattern.strongest())
            + f" (figure: {where / 'pattern.html'})"
        )
    return 0


def _one_or_many(values: list[str] | None):
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _check_heads(heads: list[tuple[int, int]], n_layers: int, n_heads: int) -> None:
    """Refuse a --pattern head the model does not have before any result is written."""
    from interp.mechanisms.attention import check_head

    for layer, head in heads:
        check_head(layer, head, n_layers, n_heads)


def _parse_head(text: str) -> tuple[int, int]:
    try:
        layer, head = (int(part) for part in text.split("."))
    except ValueError:
        raise InterpError(f"--pattern takes LAYER.HEAD like 23.3, got {text!r}.") from None
    return layer, head
