"""``Graph``: an attribution graph of one prompt (nodes, the dense adjacency of direct effects, the logits it explains).

Nodes, in the order of the adjacency's rows and columns::

    [features (layer, position, feature index, ascending)]  n_features
    [errors   (layer-major, then position)]                 n_layers * n_pos
    [tokens   (position)]                                   n_pos
    [logits   (descending probability)]                     n_logits

``adjacency[target, source]`` is the direct effect of ``source`` on ``target`` in the frozen replacement model
(``interp.graphs.replacement``): on a feature's encoder pre-activation, on a logit node's demeaned logit. Error and
token nodes have no incoming edges (their rows are zero); logit nodes have no outgoing ones.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.io import ResultFormat
from interp.provenance import Provenance
from interp.results import Result

if TYPE_CHECKING:
    from interp.dictionaries.evaluate import DictionaryEval

FORMAT = ResultFormat(
    kind="attribution_graph",
    version=1,
    name="attribution graph",
    meta_file="graph.json",
    tensors_file="graph.safetensors",
    create="interp.graphs.attribute(model, prompt, transcoders).save(DIR)",
    load="Graph.load(DIR)",
)

NODE_KINDS = ("feature", "error", "token", "logit")


class Node(NamedTuple):
    """One node: ``kind`` ("feature", "error", "token", "logit"), its ``layer`` (tokens -1, logits n_layers),
    ``position``, ``item`` (the feature index; the token id for token and logit nodes; -1 for errors) and a
    ``label`` for people."""

    kind: str
    layer: int
    position: int
    item: int
    label: str


@dataclass(frozen=True)
class Graph(Result):
    """An attribution graph (see the module docstring for the node order and what an edge is)."""

    FORMAT = FORMAT
    FIGURE_FILE = "graph.html"

    prompt: str
    tokens: Int[Tensor, " pos"]
    token_strings: tuple[str, ...]
    n_layers: int
    active_features: Int[Tensor, "feature 3"]  # (layer, position, feature index) of each feature node
    activations: Float[Tensor, " feature"]  # each feature node's activation
    logit_tokens: Int[Tensor, " logit"]
    logit_strings: tuple[str, ...]
    logit_probabilities: Float[Tensor, " logit"]
    adjacency: Float[Tensor, "node node"]
    n_active_features: int  # every active feature on the prompt, of which the graph keeps the feature nodes
    feature_order: str  # how feature nodes were chosen when capped: "all" or "logit influence"
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        for name in ("tokens", "active_features", "logit_tokens"):
            value = getattr(self, name)
            if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
                raise InterpError(f"Graph.{name} must hold integers, got {value.dtype}.")
        for name in ("activations", "logit_probabilities", "adjacency"):
            if not getattr(self, name).is_floating_point():
                raise InterpError(f"Graph.{name} must be floating point, got {getattr(self, name).dtype}.")
        n_pos = int(self.tokens.shape[0])
        if len(self.token_strings) != n_pos or self.tokens.ndim != 1:
            raise InterpError("Graph needs one token string per prompt token.")
        if self.active_features.ndim != 2 or self.active_features.shape[1] != 3:
            raise InterpError(f"Graph.active_features must be [feature, 3], got {tuple(self.active_features.shape)}.")
        if tuple(self.activations.shape) != (self.active_features.shape[0],):
            raise InterpError("Graph.activations needs one value per feature node.")
        n_logits = int(self.logit_tokens.shape[0])
        if tuple(self.logit_probabilities.shape) != (n_logits,) or len(self.logit_strings) != n_logits:
            raise InterpError("Graph needs one probability and one string per logit node.")
        if len(self.active_features) and not (
            bool((self.active_features >= 0).all())
            and int(self.active_features[:, 0].max()) < self.n_layers
            and int(self.active_features[:, 1].max()) < n_pos
        ):
            raise InterpError(f"Graph.active_features names a layer or position outside {self.n_layers} x {n_pos}.")
        n = self.n_nodes
        if tuple(self.adjacency.shape) != (n, n):
            raise InterpError(f"Graph.adjacency must be [{n}, {n}] (its nodes), got {tuple(self.adjacency.shape)}.")
        if self.n_active_features < self.n_features:
            raise InterpError("Graph.n_active_features cannot be below the number of feature nodes.")

    # ---- sizes and slices ---------------------------------------------------------------------------
    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.active_features.shape[0])

    @property
    def n_errors(self) -> int:
        return self.n_layers * self.n_pos

    @property
    def n_logits(self) -> int:
        return int(self.logit_tokens.shape[0])

    @property
    def n_nodes(self) -> int:
        return self.n_features + self.n_errors + self.n_pos + self.n_logits

    def slice_of(self, kind: str) -> slice:
        """The rows (and columns) of the adjacency that hold the nodes of ``kind``."""
        sizes = {"feature": self.n_features, "error": self.n_errors, "token": self.n_pos, "logit": self.n_logits}
        if kind not in sizes:
            raise InterpError(f"unknown node kind {kind!r}; known: {', '.join(NODE_KINDS)}.")
        start = 0
        for name in NODE_KINDS:
            if name == kind:
                return slice(start, start + sizes[name])
            start += sizes[name]
        raise AssertionError(kind)

    # ---- nodes --------------------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        """Every node in adjacency order (see the module docstring)."""
        nodes = [
            Node("feature", layer, pos, feature, f"L{layer} f{feature} @ {pos}:{self.token_strings[pos]!r}")
            for layer, pos, feature in self.active_features.tolist()
        ]
        for layer in range(self.n_layers):
            nodes += [
                Node("error", layer, pos, -1, f"L{layer} error @ {pos}:{self.token_strings[pos]!r}")
                for pos in range(self.n_pos)
            ]
        nodes += [
            Node("token", -1, pos, int(token), f"token {pos}:{self.token_strings[pos]!r}")
            for pos, token in enumerate(self.tokens.tolist())
        ]
        last = self.n_pos - 1
        nodes += [
            Node("logit", self.n_layers, last, int(token), f"logit {text!r} (p={float(p):.3g})")
            for token, text, p in zip(self.logit_tokens.tolist(), self.logit_strings, self.logit_probabilities)
        ]
        return nodes

    def node_index(
        self, kind: str, layer: int | None = None, position: int | None = None, index: int | None = None
    ) -> int:
        """The adjacency index of one node: ``("feature", layer, position, feature)``, ``("error", layer, position)``,
        ``("token", position=p)``, ``("logit", index=token_id)``. Raises if the graph has no such node."""
        if kind == "feature":
            wanted = torch.tensor([layer, position, index])
            hits = (self.active_features == wanted).all(-1).nonzero().flatten()
            if len(hits) == 0:
                raise InterpError(f"no feature node L{layer} f{index} at position {position} in this graph.")
            return int(hits[0])
        if kind == "error":
            if layer is None or position is None or not (0 <= layer < self.n_layers and 0 <= position < self.n_pos):
                raise InterpError(f"no error node at layer {layer}, position {position}.")
            return self.slice_of("error").start + layer * self.n_pos + position
        if kind == "token":
            if position is None or not 0 <= position < self.n_pos:
                raise InterpError(f"no token node at position {position} (the prompt has {self.n_pos}).")
            return self.slice_of("token").start + position
        if kind == "logit":
            hits = torch.nonzero(torch.as_tensor(self.logit_tokens == index)).flatten()
            if len(hits) == 0:
                raise InterpError(f"no logit node for token id {index}; the graph's: {self.logit_tokens.tolist()}.")
            return self.slice_of("logit").start + int(hits[0])
        raise InterpError(f"unknown node kind {kind!r}; known: {', '.join(NODE_KINDS)}.")

    # ---- the figure ---------------------------------------------------------------------------------
    def figure(
        self,
        pruned: bool = True,
        node_threshold: float = 0.8,
        edge_threshold: float = 0.98,
        features: "Mapping[int, DictionaryEval] | None" = None,
        max_edges: int = 500,
    ):
        """Tokens on x, layers on y (token embeddings at the bottom, logits on top), the graph pruned by
        ``prune_graph(node_threshold, edge_threshold)`` unless ``pruned`` is False; hover text on every node, and with
        ``features`` (layer -> the ``DictionaryEval`` of its transcoder) each feature's top contexts and promoted
        logits. See ``interp.graphs.figure``."""
        from interp.graphs.figure import graph_figure

        return graph_figure(
            self,
            pruned=pruned,
            node_threshold=node_threshold,
            edge_threshold=edge_threshold,
            features=features,
            max_edges=max_edges,
        )
