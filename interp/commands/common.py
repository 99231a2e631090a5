"""What every subcommand shares: the help formatter, model and prompt arguments, and their loaders.

Nothing here imports torch: the loaders import the library inside their bodies.
"""

import argparse
from pathlib import Path
from typing import Callable

from interp import defaults
from interp.errors import InterpError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in epilogs as written and shows defaults."""


class CheckedParser(argparse.ArgumentParser):
    """An ArgumentParser (its subcommands' too) whose numeric flags are checked against ``interp.checks.LIMITS``
    once parsed: ``--batch-size 0`` or ``--C nan`` is an InterpError naming the flag, in one place for every command."""

    def parse_known_args(self, args=None, namespace=None):
        from interp.checks import check_numbers

        namespace, extras = super().parse_known_args(args, namespace)
        check_numbers(vars(namespace), flag=True)
        return namespace, extras


def add_subcommand(subparsers, name: str, handler: Callable[[argparse.Namespace], int], help: str, example: str) -> argparse.ArgumentParser:
    """Register a subcommand whose --help ends with a runnable example."""
    parser = subparsers.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}", formatter_class=HelpFormatter)
    parser.set_defaults(handler=handler)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=defaults.MODEL, help="'organism' (bundled), a local Hugging Face directory, or a hub id")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default="float32", help="model dtype: float32, bfloat16 or float16")


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-field", default="text", help="JSONL/CSV field holding the prompt")
    parser.add_argument("--label-field", default=defaults.LABEL_FIELD, help="JSONL/CSV field holding the label")
    parser.add_argument("--chat-template", action="store_true", help="wrap each prompt as a user turn with the tokenizer's chat template")


def load_model_from_args(args: argparse.Namespace):
    from interp.models import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype)


def load_prompts_from_args(args: argparse.Namespace, model=None, path: Path | None = None):
    from interp.data import PromptSet

    prompts = PromptSet.from_file(path or args.prompts, text_field=args.text_field, label_field=args.label_field)
    if getattr(args, "chat_template", False):
        prompts = prompts.apply_chat_template(model.tokenizer)
    return prompts


def parse_positions(text: str):
    if text in ("last", "all"):
        return text
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InterpError(f"--positions must be 'last', 'all' or comma-separated integers like '0,-1', got {text!r}.") from None
