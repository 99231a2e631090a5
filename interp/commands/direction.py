"""``interp direction``: find the refusal direction (Arditi et al. 2024), and write a model orthogonalised against
it."""

import argparse
from pathlib import Path

from interp.commands.common import (
    HelpFormatter,
    add_model_arguments,
    add_subcommand,
    load_model_from_args,
)
from interp.errors import InterpError
from interp.experiments.directions import DirectionsConfig
from interp.experiments.flags import add_config_flags

# the flags of DirectionsConfig's fields (its instruction tables are --harmful / --benign FILE with --*-column;
# its orthogonalize_out is `interp direction orthogonalize`)
CONFIG_FLAGS = (
    "n_train",
    "n_val",
    "layers",
    "positions",
    "refusal_starts",
    "max_kl",
    "max_layer_fraction",
    "chat_template",
    "batch_size",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "direction",
        help="Refusal direction: difference-of-means candidates per layer and post-instruction position, selected by "
        "ablation/addition/KL; orthogonalised model.",
        description="Refusal direction (Arditi et al. 2024). `find` scores candidates and saves the result; "
        "`orthogonalize` writes a new model directory.",
        epilog="examples:\n  interp direction find --model smollm2-135m-instruct --harmful advbench.csv --benign "
        "assets/prompts/benign_instructions.jsonl --out runs/refusal_direction\n"
        "  interp direction orthogonalize --model smollm2-135m-instruct --direction runs/refusal_direction --out "
        "/tmp/smollm2-orthogonalized",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="direction_command", metavar="ACTION", required=True)

    find = add_subcommand(
        commands,
        "find",
        run_find,
        help="Candidates at every layer and post-instruction position, scored on held-out prompts; writes "
        "directions.json/.safetensors/.html and direction.safetensors.",
        example="interp direction find --model smollm2-135m-instruct --harmful assets/prompts/advbench/advbench.txt "
        "--benign assets/prompts/benign_instructions.jsonl --out runs/refusal_direction",
    )
    add_model_arguments(find)
    find.add_argument(
        "--harmful",
        type=Path,
        required=True,
        help="harmful instructions: CSV with a header (AdvBench: 'goal'), JSONL or TXT",
    )
    find.add_argument(
        "--benign",
        type=Path,
        required=True,
        help="benign instructions, same formats; a 'split' field (train/heldout) is used when present",
    )
    find.add_argument(
        "--harmful-column",
        default=None,
        help="the column/field holding the instruction (default: goal, prompt, behavior, instruction or text)",
    )
    find.add_argument("--benign-column", default=None, help="the same for --benign")
    add_config_flags(find, DirectionsConfig, CONFIG_FLAGS)
    find.add_argument("--out", type=Path, required=True, help="output directory (resumed when rerun)")

    ortho = add_subcommand(
        commands,
        "orthogonalize",
        run_orthogonalize,
        help="Write a Hugging Face model directory whose W_E, attention-out and MLP-out weights have the direction "
        "removed (unembedding untied).",
        example="interp direction orthogonalize --model smollm2-135m-instruct --direction runs/refusal_direction --out "
        "/tmp/smollm2-orthogonalized",
    )
    add_model_arguments(ortho)
    ortho.add_argument(
        "--direction",
        type=Path,
        required=True,
        help="a `direction find` output directory, or its direction.safetensors",
    )
    ortho.add_argument("--out", type=Path, required=True, help="the new model directory (must not exist or be empty)")


def parse_ints(text: str | None, flag: str) -> list[int] | None:
    """Comma-separated integers (--layers, --positions), or None for the default."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InterpError(f"{flag} takes comma-separated integers like 10,12,14, got {text!r}.") from None


def parse_words(text: str) -> list[str]:
    """Comma-separated words (--refusal-starts), empty ones left out; a blank one is kept for find_directions to
    refuse."""
    return [word for word in text.split(",") if word]


def run_find(args: argparse.Namespace) -> int:
    from interp.directions import find_directions, read_instructions, split_instructions

    harmful = read_instructions(args.harmful, label="harmful", column=args.harmful_column)
    benign = read_instructions(args.benign, label="benign", column=args.benign_column)
    (harmful, val_harmful), (benign, val_benign) = split_instructions(harmful), split_instructions(benign)
    if args.n_train is not None:
        harmful, benign = (p.select(range(min(args.n_train, len(p)))) for p in (harmful, benign))
    if args.n_val is not None:
        val_harmful, val_benign = (p.select(range(min(args.n_val, len(p)))) for p in (val_harmful, val_benign))
    model = load_model_from_args(args)
    result = find_directions(
        model,
        harmful,
        benign,
        val_harmful,
        val_benign,
        positions=parse_ints(args.positions, "--positions"),
        layers=parse_ints(args.layers, "--layers"),
        refusal_starts=parse_words(args.refusal_starts),
        max_kl=args.max_kl,
        max_layer_fraction=args.max_layer_fraction,
        chat_template=args.chat_template,
        batch_size=args.batch_size,
    )
    result.save(args.out)
    print(result.summary())
    print(
        f"written to {args.out} (figure: {args.out / 'directions.html'}; direction: "
        f"{args.out / 'direction.safetensors'})"
    )
    return 0


def run_orthogonalize(args: argparse.Namespace) -> int:
    from interp.directions import RefusalDirection, save_orthogonalized

    path = args.direction / "direction.safetensors" if args.direction.is_dir() else args.direction
    direction = RefusalDirection.load(path)
    model = load_model_from_args(args)
    save_orthogonalized(model, direction, args.out)
    print(
        f"orthogonalised against the direction of layer {direction.layer}, position {direction.position_label}: "
        f"model written to {args.out} (load it with interp.load_model({str(args.out)!r}))"
    )
    return 0
