"""``interp cache``: run a model over a prompt file and cache activations to a store directory.

Under ``torchrun --nproc-per-node N -m interp cache ...`` the N ranks share the shards (see
``interp.distributed``); each puts its model on ``cuda:LOCAL_RANK`` when CUDA is there.
"""

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


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "cache",
        run,
        help="Run a model over a prompt file and cache activations to a store directory (sharded safetensors).",
        example="interp cache --model organism --prompts prompts.jsonl --hooks resid_post,z --positions last --out acts\n"
        "  torchrun --nproc-per-node 4 -m interp cache --model organism --prompts prompts.jsonl --out acts   # 4 ranks share the shards",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--prompts",
        required=True,
        type=Path,
        help='prompt file: .jsonl (one {"text": ...} per line), .csv (with a text column) or .txt (one prompt per line)',
    )
    parser.add_argument(
        "--hooks",
        default="resid_post",
        help="comma-separated hook names or shorthands (resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, q, k, v, pattern, embed)",
    )
    parser.add_argument(
        "--positions",
        default="last",
        help="'last', 'all', or comma-separated positions like '0,-1' (negative counts from each prompt's end)",
    )
    parser.add_argument("--out", required=True, type=Path, help="store directory to create (or to resume)")
    parser.add_argument("--batch-size", type=int, default=defaults.CACHE_BATCH_SIZE, help="prompts per forward pass")
    parser.add_argument("--shard-size", type=int, default=None, help="prompts per shard file (default: 8 batches)")
    parser.add_argument(
        "--store-dtype", default=None, help="storage dtype: float32, bfloat16 or float16 (default: the model's)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out, keeping its finished shards"
    )
    add_prompt_arguments(parser)


def run(args: argparse.Namespace) -> int:

    from interp.distributed import current_world, leave_process_group
    from interp.io import atomic_write_figure
    from interp.mechanisms.norms import site_norms
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
            hooks=[name for name in args.hooks.split(",") if name.strip()],
            positions=positions,
            out=args.out,
            batch_size=args.batch_size,
            dtype=args.store_dtype,
            shard_size=args.shard_size,
            resume=args.resume,
        )
    finally:
        leave_process_group()
    if not world.is_main:
        return 0
    figure_path = args.out / "overview.html"
    atomic_write_figure(figure_path, site_norms(store).figure())
    print(f"cached {store.n_prompts} prompts x {len(store.hooks)} hooks to {args.out} (figure: {figure_path})")
    return 0
