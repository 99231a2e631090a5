"""What every subcommand shares: the help formatter, model and prompt arguments, and their loaders.

Nothing here imports torch: the loaders import the library inside their bodies.
"""

import argparse
import functools
import weakref
from collections.abc import Callable
from pathlib import Path

from interp import defaults
from interp.errors import InterpError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in epilogs as written and shows defaults."""


OUTPUT_FLAGS = (
    "out",
    "result_dir",
)  # the flags naming where a command writes (a directory, unless marked ``writes_file``)


class CheckedParser(argparse.ArgumentParser):
    """An ArgumentParser (its subcommands' too) whose flags are checked once parsed, in one place for every command.

    Numeric flags against ``interp.checks.LIMITS`` (``--batch-size 0`` or ``--C nan`` is an InterpError
    naming the flag); ``--out`` / ``--result-dir`` with ``interp.checks.check_output_path`` before any
    work (an existing file, a read-only directory). The handler is wrapped so that an OSError of the
    file system it meets (a full disk) is an InterpError naming the path, not a traceback.
    """

    def parse_known_args(self, args=None, namespace=None):
        from interp.checks import check_numbers

        namespace, extras = super().parse_known_args(args, namespace)
        check_numbers(vars(namespace), flag=True)
        handler = getattr(namespace, "handler", None)
        if handler is not None and handler not in _CHECKED:
            namespace.handler = _checked(handler)
        return namespace, extras


Handler = Callable[[argparse.Namespace], int]
_WRITES_FILE: "weakref.WeakSet[Handler]" = weakref.WeakSet()  # handlers whose --out is a file, not a directory
_WRITES_STORE: "weakref.WeakSet[Handler]" = weakref.WeakSet()  # handlers whose --out is an activation store
_CHECKED: "weakref.WeakSet[Handler]" = weakref.WeakSet()  # handlers wrapped by _checked


def writes_file(handler: Handler) -> Handler:
    """Mark a handler whose ``--out`` names a file to write (not a directory)."""
    _WRITES_FILE.add(handler)
    return handler


def writes_store(handler: Handler) -> Handler:
    """Mark a handler whose ``--out`` is an activation store it writes or resumes (no other command writes there)."""
    _WRITES_STORE.add(handler)
    return handler


def _checked(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from interp.checks import FILESYSTEM_FIXES, check_output_path, filesystem_error

        for name in OUTPUT_FLAGS:
            kind = "directory"
            if name == "out":
                kind = "file" if handler in _WRITES_FILE else "store" if handler in _WRITES_STORE else "directory"
            check_output_path(getattr(args, name, None), flag=f"--{name.replace('_', '-')}", kind=kind)
        try:
            return handler(args)
        except OSError as error:
            if error.filename:
                raise filesystem_error(error, action="use") from error
            if error.errno in FILESYSTEM_FIXES:  # a write with no file named (a full disk): name the output it went to
                outputs = [
                    f"--{name.replace('_', '-')} {getattr(args, name)}"
                    for name in OUTPUT_FLAGS
                    if getattr(args, name, None) is not None
                ]
                raise filesystem_error(error, " or ".join(outputs) or None) from error
            raise  # a library's own OSError, not about a path: its message is kept

    _CHECKED.add(run)
    return run


def add_subcommand(subparsers, name: str, handler: Handler | None, help: str, example: str) -> argparse.ArgumentParser:
    """Register a subcommand whose --help ends with a runnable example (``handler`` None: it prints that help)."""
    parser = subparsers.add_parser(
        name, help=help, description=help, epilog=f"example:\n  {example}", formatter_class=HelpFormatter
    )
    parser.set_defaults(handler=handler or _help_of(parser))
    return parser


def _help_of(parser: argparse.ArgumentParser) -> Handler:
    """A handler that prints ``parser``'s help: a command given without one of its subcommands."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return show


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=defaults.MODEL, help="'organism' (bundled), a local Hugging Face directory, or a hub id"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default="float32", help="model dtype: float32, bfloat16 or float16")


def add_prompt_arguments(parser: argparse.ArgumentParser, label_field: bool = True, chat_template: bool = True) -> None:
    """The flags of a prompt file; ``label_field`` / ``chat_template``: False where the command's config gives that
    flag."""
    parser.add_argument("--text-field", default="text", help="JSONL/CSV field holding the prompt")
    if label_field:
        parser.add_argument("--label-field", default=defaults.LABEL_FIELD, help="JSONL/CSV field holding the label")
    if chat_template:
        parser.add_argument(
            "--chat-template",
            action="store_true",
            help="wrap each prompt as a user turn with the tokenizer's chat template",
        )


def load_model_from_args(args: argparse.Namespace):
    from interp.model import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype)


def load_prompts_from_args(args: argparse.Namespace, model=None, path: Path | None = None):
    from interp.data import PromptSet

    prompts = PromptSet.from_file(path or args.prompts, text_field=args.text_field, label_field=args.label_field)
    if getattr(args, "chat_template", False):
        prompts = prompts.apply_chat_template(model.tokenizer)
    return prompts


def comma_words(text: str) -> list[str]:
    """The items of comma-separated text, empty ones left out (``"a,,b"`` -> ``["a", "b"]``)."""
    return [word for word in text.split(",") if word.strip()]


def parse_positions(text: str):
    if text in ("last", "all"):
        return text
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InterpError(
            f"--positions must be 'last', 'all' or comma-separated integers like '0,-1', got {text!r}."
        ) from None
