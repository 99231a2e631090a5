"""``interp store verify DIR``: the full check of an activation store (every file re-hashed against its manifest)."""

import argparse
from pathlib import Path

from interp.commands.common import add_subcommand


def register(subparsers) -> None:
    """Add ``store`` with its ``verify`` subcommand."""
    parser = add_subcommand(
        subparsers,
        "store",
        None,
        help="Inspect an activation store directory (made by `interp cache`).",
        example="interp store verify acts",
    )
    commands = parser.add_subparsers(dest="store_command", metavar="{verify}")
    verify = add_subcommand(
        commands,
        "verify",
        run_verify,
        help="Check a store completely: manifest, every shard, tokens, prompts and readout against their recorded "
        "sizes and hashes.",
        example="interp store verify acts          # exit code 0: intact; 2: names the damaged file",
    )
    verify.add_argument("store", type=Path, help="the store directory")
    verify.add_argument(
        "--allow-partial", action="store_true", help="also check an unfinished store (its finished shards)"
    )


def run_verify(args: argparse.Namespace) -> int:
    from interp.store import ActivationStore

    store = ActivationStore.open(args.store, allow_partial=args.allow_partial, verify=True)
    print(
        f"{args.store}: intact ({store.n_prompts} prompts, {len(store.hooks)} hooks, {len(store.manifest['shards'])} "
        "shards verified)"
    )
    return 0
