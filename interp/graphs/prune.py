"""Pruning an attribution graph and scoring how much of it the features explain (as circuit-tracer does).

With ``A`` the graph's adjacency (``A[target, source]``), ``N = |A| / rowsum|A|`` its row-normalised magnitude (a
target's incoming edges as fractions) and ``w`` the logit probabilities placed at the logit nodes (zero elsewhere),
the influence of every node on the logits, summed over all path lengths, is::

    influence = Σ_{k≥1} w N^k = w ((I − N)^-1 − I)

(the series ends: the graph is acyclic, so ``N`` is nilpotent).

``prune_graph`` keeps the nodes of largest influence until they hold ``node_threshold`` of the total, then, in the
graph of those nodes, the edges of largest score ``N'[t, s] · (influence'[t] + w[t])`` until they hold
``edge_threshold`` of the total (``N'``, ``influence'``: recomputed on the kept nodes; an edge of weight zero is never
kept); then repeatedly drops feature
and error nodes left without kept outgoing edges and feature nodes without kept incoming ones. Token and logit nodes
are always kept.

``compute_graph_scores`` gives the replacement score, ``token influence / (token influence + error influence)``
(the share of the tokens' and errors' influence that enters through the tokens), and the completeness score,
``Σ_t (1 − Σ_{s error} N[t, s]) (influence[t] + w[t]) / Σ_t (influence[t] + w[t])`` (the influence-weighted
fraction of incoming edges that come from non-error nodes).
"""

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from interp.errors import InterpError


class PrunableGraph(Protocol):
    """What pruning reads of an ``interp.graphs.Graph`` (a protocol, so that the graph's figure can prune without
    this module importing the graph's)."""

    @property
    def adjacency(self) -> Tensor: ...

    @property
    def logit_probabilities(self) -> Tensor: ...

    @property
    def n_nodes(self) -> int: ...

    def slice_of(self, kind: str) -> slice: ...


class PruneResult(NamedTuple):
    """``node_mask[node]``, ``edge_mask[target, source]``: what is kept; ``cumulative_scores[node]``: the share of
    the total influence held by the nodes at least as influential as this one."""

    node_mask: Tensor
    edge_mask: Tensor
    cumulative_scores: Tensor


def normalized_adjacency(adjacency: Tensor) -> Tensor:
    """``|A| / rowsum|A|``, rows without edges left zero."""
    magnitude = adjacency.abs()
    return magnitude / magnitude.sum(-1, keepdim=True).clamp_min(1e-10)


def influence(normalized: Tensor, logit_weights: Tensor, max_iterations: int = 10_000) -> Tensor:
    """``Σ_{k≥1} w N^k`` by repeated products, until a product is zero (acyclic graphs)."""
    current = logit_weights @ normalized
    total = current.clone()
    for _ in range(max_iterations):
        if not current.any():
            return total
        current = current @ normalized
        total += current
    raise InterpError("the graph's influence did not converge: its adjacency has a cycle.")


def logit_weights(graph: PrunableGraph) -> Tensor:
    """The logit probabilities placed at the logit nodes, zero elsewhere."""
    weights = torch.zeros(graph.n_nodes, dtype=graph.adjacency.dtype)
    weights[graph.slice_of("logit")] = graph.logit_probabilities.to(weights.dtype)
    return weights


def node_influence(graph: PrunableGraph) -> Tensor:
    """Every node's influence on the logits (see the module docstring)."""
    return influence(normalized_adjacency(graph.adjacency), logit_weights(graph))


def _threshold(scores: Tensor, fraction: float) -> Tensor:
    """The smallest score among the largest scores that together hold ``fraction`` of the total."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp_min(1e-30)
    index = min(int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype))), len(ordered) - 1)
    return ordered[index]


def prune_graph(graph: PrunableGraph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> PruneResult:
    """Keep the nodes and edges that carry ``node_threshold`` / ``edge_threshold`` of the influence on the logits
    (see the module docstring)."""
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise InterpError(f"{name} must lie in [0, 1], got {value}.")
    weights = logit_weights(graph)
    influences = node_influence(graph)
    node_mask = influences >= _threshold(influences, node_threshold)
    always = slice(graph.slice_of("token").start, graph.n_nodes)
    node_mask[always] = True
    pruned = graph.adjacency.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    normalized = normalized_adjacency(pruned)
    edge_scores = normalized * (influence(normalized, weights) + weights)[:, None]
    edge_mask = edge_scores >= _threshold(edge_scores.flatten(), edge_threshold)
    edge_mask &= pruned != 0
    inner = slice(0, graph.slice_of("token").start)  # features and errors
    features = graph.slice_of("feature")
    while True:
        before = node_mask.clone()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[inner] &= edge_mask[:, inner].any(0)  # features and errors need a kept outgoing edge
        node_mask[features] &= edge_mask[features].any(1)  # features need a kept incoming edge
        if torch.equal(node_mask, before):
            break
    ordered, order = influences.sort(descending=True)
    cumulative = torch.zeros_like(influences)
    cumulative[order] = ordered.cumsum(0) / ordered.sum().clamp_min(1e-30)
    return PruneResult(node_mask, edge_mask, cumulative)


def compute_graph_scores(graph: PrunableGraph) -> tuple[float, float]:
    """``(replacement score, completeness score)`` of the graph (see the module docstring); both 1 when no error
    node has an outgoing edge."""
    weights = logit_weights(graph)
    normalized = normalized_adjacency(graph.adjacency)
    influences = influence(normalized, weights)
    errors, tokens = graph.slice_of("error"), graph.slice_of("token")
    token_influence, error_influence = influences[tokens].sum(), influences[errors].sum()
    replacement = token_influence / (token_influence + error_influence).clamp_min(1e-30)
    non_error = 1 - normalized[:, errors].sum(-1)
    output_influence = influences + weights
    completeness = (non_error * output_influence).sum() / output_influence.sum()
    return float(replacement), float(completeness)
