"""The ``interp`` command line: one module per subcommand, registered in ``COMMANDS``.

Each module ``interp.commands.<name>`` defines ``register(subparsers)``, which adds its subcommand
(and any sub-subcommands) with :func:`interp.commands.common.add_subcommand`. Command modules
import the analyses inside their handlers, so ``interp --help`` loads neither torch nor plotly.
Nothing outside this package (and ``interp/cli.py``, ``interp/__main__.py``) imports it.
"""

import argparse
import importlib

from interp.commands.common import CheckedParser, HelpFormatter

# subcommand -> the module that registers it, in the order ``interp --help`` lists them
COMMANDS = {
    "cache": "interp.commands.cache",
    "store": "interp.commands.store",
    "lens": "interp.commands.lens",
    "dla": "interp.commands.dla",
    "patch": "interp.commands.patch",
    "prune": "interp.commands.prune",
    "probe": "interp.commands.probe",
    "dictionary": "interp.commands.dictionary",
    "graph": "interp.commands.graph",
    "direction": "interp.commands.direction",
    "resample": "interp.commands.resample",
    "organism": "interp.commands.organism",
    "run": "interp.commands.run",
    "demo": "interp.commands.demo",
}


def build_parser() -> argparse.ArgumentParser:
    """The whole ``interp`` parser: every subcommand in ``COMMANDS``."""
    from interp import __version__

    parser = CheckedParser(
        prog="interp",
        description="Mechanistic-interpretability workbench: cache activations, logit lens, direct logit attribution, "
        "patching, pruning, probes, CoT resampling.",
        epilog="example:\n  interp cache --model organism --prompts prompts.jsonl --hooks resid_post --out acts",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"interp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(subparsers)
    return parser
