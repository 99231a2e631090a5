"""``interp graph``: the attribution graph of one prompt through a transcoder per layer, pruned and drawn.

The experiment is a ``GraphConfig`` run by ``interp.experiments.run_experiment`` (its flags are that config's
fields), so a rerun into the same ``--out`` loads the finished graph instead of computing it again.
"""

import argparse
import json
from pathlib import Path

from interp.commands.common import add_model_arguments, add_subcommand
from interp.experiments.flags import add_config_flags
from interp.experiments.graph import FIGURE_FILE, SCORES_FILE, GraphConfig

# the flags of GraphConfig's fields
CONFIG_FLAGS = (
    "prompt",
    "transcoders",
    "max_feature_nodes",
    "max_logits",
    "desired_logit_prob",
    "node_threshold",
    "edge_threshold",
    "batch_size",
    "features",
)

EXAMPLE = (
    "interp graph --model smollm2-135m-instruct --prompt 'The capital of France is' "
    "--transcoders runs/transcoders --out runs/graph_france"
)


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "graph",
        run,
        help="Attribution graph (circuit tracing): the direct effects between transcoder features, error nodes, "
        "tokens and logits of one prompt; writes the graph (graph.json, graph.safetensors), the pruned graph's "
        f"figure ({FIGURE_FILE}) and the replacement and completeness scores ({SCORES_FILE}) to --out.",
        example=EXAMPLE,
    )
    add_model_arguments(parser)
    add_config_flags(parser, GraphConfig, CONFIG_FLAGS)
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output directory; rerun with the same --out to reuse the finished graph",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from interp.experiments import run_experiment

    config = GraphConfig(
        name="graph",
        model=args.model,
        dtype=args.dtype,
        device=args.device,
        prompt=args.prompt,
        transcoders=str(args.transcoders.resolve()),
        features=None if args.features is None else str(args.features.resolve()),
        **{name: getattr(args, name) for name in CONFIG_FLAGS if name not in ("prompt", "transcoders", "features")},
    )
    saved = args.out / "graph.json"
    before = saved.stat().st_mtime_ns if saved.is_file() else None
    graph = run_experiment(config, args.out, progress=not args.quiet)
    reused = before is not None and saved.stat().st_mtime_ns == before
    scores = json.loads((args.out / SCORES_FILE).read_text(encoding="utf-8"))
    print(
        f"{'reused the finished graph' if reused else 'attribution graph'} of {graph.n_pos} tokens: "
        f"{graph.n_features} feature nodes ({graph.n_active_features} active features), {graph.n_logits} logit nodes; "
        f"pruned to {scores['feature_nodes_kept']} feature nodes and {scores['edges_kept']} edges; replacement score "
        f"{scores['replacement_score']:.3f}, completeness {scores['completeness_score']:.3f}"
    )
    print(f"written to {args.out} (figure: {args.out / FIGURE_FILE})")
    return 0
