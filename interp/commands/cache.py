"""``interp cache``: run a model over a prompt file and cache activations to a store directory.

Under ``torchrun --nproc-per-node N -m interp cache ...`` the N ranks share the shards (see
``interp.distributed``); each puts its model on ``cuda:LOCAL_RANK`` when CUDA is there.
"""

import argparse
from pathlib import Path

from interp.commands.common import (
    add_model_arguments,
    add_prompt_arguments,
    add_subcommand,
    comma_words,
    load_model_from_args,
    load_prompts_from_args,
    parse_positions,
    writes_store,
)
from interp.experiments.cache import CacheConfig
from interp.experiments.flags import add_config_flags

# the flags of CacheConfig's fields (its data set is --prompts FILE)
CONFIG_FLAGS = (
    "hooks",
    "positions",
    "batch_size",
    "shard_size",
    "store_dtype",
    "chat_template",
    "chunk_tokens",
    "max_tokens",
)


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "cache",
        run,
        help="Run a model over a prompt file and cache activations to a store directory (sharded safetensors).",
        example="interp cache --model organism --prompts prompts.jsonl --hooks resid_post,z --positions last "
        "--out acts\n"
        "  torchrun --nproc-per-node 4 -m interp cache --model organism --prompts prompts.jsonl --out acts   # 4 "
        "ranks share the shards",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--prompts",
        required=True,
        type=Path,
        help='prompt file: .jsonl (one {"text": ...} per line), .csv (with a text column) '
        "or .txt (one prompt per line)",
    )
    add_config_flags(parser, CacheConfig, CONFIG_FLAGS)
    parser.add_argument("--out", required=True, type=Path, help="store directory to create (or to resume)")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out, keeping its finished shards"
    )
    add_prompt_arguments(parser, chat_template=False)


@writes_store
def run(args: argparse.Namespace) -> int:

    from interp.distributed import current_world, leave_process_group
    from interp.io import atomic_write_figure
    from interp.mechanisms.norms import has_layer_sites, site_norms
    from interp.store import cache_activations

    positions = parse_positions(args.positions)
    world = current_world()
    args.device = world.device_for(args.device)
    model = load_model_from_args(args)
    prompts = load_prompts_from_args(args, model)
    try:
        store = cache_activations(
            model,
            prompts,
            hooks=comma_words(args.hooks),
            positions=positions,
            out=args.out,
            batch_size=args.batch_size,
            dtype=args.store_dtype,
            shard_size=args.shard_size,
            resume=args.resume,
            chunk_tokens=args.chunk_tokens,
            max_tokens=args.max_tokens,
        )
    finally:
        leave_process_group()
    if not world.is_main:
        return 0
    figure_path = args.out / "overview.html"
    if has_layer_sites(store):
        atomic_write_figure(figure_path, site_norms(store).figure())
        shown = f"figure: {figure_path}"
    else:
        shown = "no overview figure: it draws per-layer sites, and the store holds none"
    print(f"cached {store.n_prompts} prompts x {len(store.hooks)} hooks to {args.out} ({shown})")
    return 0
