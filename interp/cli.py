"""The `interp` command line: a thin layer over the library.

Each subcommand (one module in ``interp.commands``) parses its flags, calls one library function
and writes what it returns. Errors print as one line (``interp: error: ...``) with exit code 2,
never a traceback.
"""

import sys
from collections.abc import Sequence

from interp.errors import InterpError

# what to do after Ctrl-C, per subcommand: each keeps what it finished
RESUME_HINTS = {
    "cache": "rerun the same command with --resume: finished shards are kept",
    "run": "rerun the same command: finished steps are loaded, not computed again",
    "resample": "rerun the same command with the same --out: finished rollouts are kept",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input)."""
    from interp.commands import build_parser

    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 0
        return int(args.handler(args) or 0)
    except InterpError as error:
        print(f"interp: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = RESUME_HINTS.get(getattr(args, "command", ""), "nothing half-written is left behind")
        print(f"interp: interrupted; {hint}", file=sys.stderr)
        return 130
    except SystemExit as exit_:  # argparse's own usage errors and --help
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2


if __name__ == "__main__":
    sys.exit(main())
