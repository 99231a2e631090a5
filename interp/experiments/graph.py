"""``analysis = "graph"``: the attribution graph of one prompt through a transcoder per layer (circuit tracing),
pruned and drawn.

Writes to ``--out``: the graph (``graph.json`` + ``graph.safetensors``, ``interp.graphs.Graph``), the pruned graph's
figure (``graph.html``, offline) and ``scores.json`` (replacement and completeness scores, the thresholds and what
pruning kept). A rerun of the same config into the same directory loads the finished graph instead of computing it.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from interp.errors import InterpError
from interp.experiments.base import Experiment, doc

logger = logging.getLogger(__name__)

SCORES_FILE = "scores.json"
FIGURE_FILE = "graph.html"  # Graph.FIGURE_FILE: the pruned graph's figure
DEFAULT_NODE_THRESHOLD, DEFAULT_EDGE_THRESHOLD = 0.8, 0.98  # prune_graph's and Graph.figure's


@dataclass(frozen=True, kw_only=True)
class GraphConfig(Experiment):
    """Attribution graph: the direct effects between transcoder features, error nodes, tokens and logits of one
    prompt, pruned to what carries the most influence on the logits."""

    ANALYSIS: ClassVar[str] = "graph"
    name: str = doc("experiment name, shown in figures and logs", default="graph")
    prompt: str = doc("the prompt whose next-token prediction the graph explains")
    transcoders: str = doc(
        "a directory of one transcoder directory per layer (save_transcoders' layer_NN/, sparsify's layers.N.mlp/)",
        path=True,
    )
    max_feature_nodes: int | None = doc(
        "feature nodes kept, those of largest influence on the logits (default: every active feature)", default=None
    )
    max_logits: int = doc("most logit nodes (the most probable next tokens)", default=10)
    desired_logit_prob: float = doc(
        "logit nodes are added until their cumulative probability reaches this", default=0.95
    )
    node_threshold: float = doc(
        "pruning keeps the nodes holding this share of the influence on the logits", default=DEFAULT_NODE_THRESHOLD
    )
    edge_threshold: float = doc(
        "pruning keeps the edges holding this share of the influence", default=DEFAULT_EDGE_THRESHOLD
    )
    batch_size: int = doc("targets per backward pass", default=32)
    features: str | None = doc(
        "a directory of the transcoders' evaluations (layer_NN/, each of interp dictionary eval): the figure's hover "
        "text then shows each feature's top contexts and promoted logits",
        path=True,
        default=None,
    )

    def __post_init__(self) -> None:
        if not self.prompt:
            raise InterpError("a graph experiment needs a non-empty prompt.")

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.graphs.graph import Graph

        def compute() -> Graph:
            from interp.graphs.attribution import attribute
            from interp.graphs.transcoders import load_transcoders

            loaded = self.load_model(model)
            transcoders = load_transcoders(self.transcoders, n_layers=int(loaded.cfg.n_layers))
            return attribute(
                loaded,
                self.prompt,
                transcoders,
                max_feature_nodes=self.max_feature_nodes,
                max_logits=self.max_logits,
                desired_logit_prob=self.desired_logit_prob,
                batch_size=self.batch_size,
                progress=progress,
            )

        def load(directory: Path) -> Graph:
            from interp.graphs.transcoders import load_transcoders

            graph = Graph.load(directory)
            if not (directory / SCORES_FILE).is_file():
                raise InterpError(f"{directory} lacks {SCORES_FILE}")  # an unfinished run: computed again
            recorded = (graph.provenance.extra or {}).get("transcoder_weights") if graph.provenance else None
            current = ",".join(t.content_hash() for t in load_transcoders(self.transcoders, n_layers=graph.n_layers))
            if recorded != current:  # the same path, other transcoders (retrained): computed again
                raise InterpError(f"{directory} holds a graph of other transcoders")
            logger.info(
                "interp: %s holds the finished graph of this experiment; it is loaded, not computed again.", out
            )
            return graph

        return self._once(out, (), load, compute, self.write)

    def write(self, graph, directory: Path) -> None:
        """The graph, its pruned figure at this config's thresholds and its scores, into ``directory``."""
        from interp.graphs.prune import compute_graph_scores, prune_graph
        from interp.io import atomic_write_figure, atomic_write_json

        graph.save(directory)  # graph.html drawn at Graph.figure's default thresholds
        defaults = (DEFAULT_NODE_THRESHOLD, DEFAULT_EDGE_THRESHOLD)
        if (self.node_threshold, self.edge_threshold) != defaults or self.features is not None:
            from interp.graphs.transcoders import load_feature_evaluations

            evaluations = None if self.features is None else load_feature_evaluations(self.features)
            figure = graph.figure(
                node_threshold=self.node_threshold, edge_threshold=self.edge_threshold, features=evaluations
            )
            atomic_write_figure(directory / FIGURE_FILE, figure)
        replacement, completeness = compute_graph_scores(graph)
        kept = prune_graph(graph, node_threshold=self.node_threshold, edge_threshold=self.edge_threshold)
        features = graph.slice_of("feature")
        atomic_write_json(
            directory / SCORES_FILE,
            {
                "replacement_score": replacement,
                "completeness_score": completeness,
                "node_threshold": self.node_threshold,
                "edge_threshold": self.edge_threshold,
                "feature_nodes": graph.n_features,
                "active_features": graph.n_active_features,
                "feature_nodes_kept": int(kept.node_mask[features].sum()),
                "nodes_kept": int(kept.node_mask.sum()),
                "edges_kept": int(kept.edge_mask.sum()),
            },
        )
