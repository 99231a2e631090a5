"""Pruning and graph scores: influences equal the closed form w((I − N)^-1 − I) on a hand-built graph, pruning keeps
tokens and logits and drops a feature without a path to the logits, a graph whose error nodes have no outgoing
edge scores 1 for replacement and completeness, and a real graph's scores lie in [0, 1]."""

import pytest
import torch

from interp.errors import InterpError
from interp.graphs import Graph, attribute, compute_graph_scores, node_influence, prune_graph

# Nodes: features F0 (L0 p0), F1 (L0 p1), F2 (L1 p1), F3 (L0 p0, no path to the logits);
# errors (L0 p0, L0 p1, L1 p0, L1 p1) = 4..7; tokens 8, 9; logits 10, 11.
EDGES = {
    (0, 8): 1.0, (1, 8): -0.5, (1, 9): 2.0, (3, 8): 0.7,
    (2, 0): 0.8, (2, 1): -1.2, (2, 5): 0.3, (2, 9): 0.4,
    (10, 2): 1.5, (10, 1): 0.2, (10, 7): -0.6, (10, 9): 0.1, (11, 0): -0.9, (11, 2): 0.5, (11, 6): 0.25,
}  # fmt: skip


def hand_built(edges=EDGES) -> Graph:
    adjacency = torch.zeros(12, 12)
    for (target, source), weight in edges.items():
        adjacency[target, source] = weight
    return Graph(
        prompt="a b", tokens=torch.tensor([3, 4]), token_strings=("a", " b"), n_layers=2,
        active_features=torch.tensor([[0, 0, 5], [0, 1, 6], [1, 1, 2], [0, 0, 9]]),
        activations=torch.tensor([1.0, 2.0, 0.5, 0.3]), logit_tokens=torch.tensor([7, 8]), logit_strings=(" x", " y"),
        logit_probabilities=torch.tensor([0.7, 0.2]), adjacency=adjacency, n_active_features=4, feature_order="all",
    )  # fmt: skip


def closed_form(graph: Graph) -> torch.Tensor:
    magnitude = graph.adjacency.double().abs()
    sums = magnitude.sum(1, keepdim=True)
    normalized = torch.where(sums > 0, magnitude / torch.where(sums > 0, sums, 1.0), 0.0)
    weights = torch.zeros(graph.n_nodes, dtype=torch.float64)
    weights[-graph.n_logits :] = graph.logit_probabilities.double()
    identity = torch.eye(graph.n_nodes, dtype=torch.float64)
    return weights @ (torch.linalg.inv(identity - normalized) - identity)


def test_influence_equals_the_closed_form():
    graph = hand_built()
    got, want = node_influence(graph).double(), closed_form(graph)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7), (got, want)
    assert want[3] == 0 and want[8] > 0  # F3 reaches no logit; the tokens do


def test_pruning_keeps_tokens_and_logits_and_drops_what_reaches_no_logit():
    graph = hand_built()
    kept = prune_graph(graph, node_threshold=1.0, edge_threshold=1.0)
    assert kept.node_mask[8:].all() and not kept.node_mask[3]
    assert kept.node_mask[[0, 1, 2]].all()
    assert not kept.edge_mask[3].any() and not kept.edge_mask[:, 3].any()
    assert bool((kept.edge_mask <= (graph.adjacency != 0)).all())  # only real edges
    strict = prune_graph(graph, node_threshold=0.5, edge_threshold=0.5)
    assert strict.node_mask.sum() < kept.node_mask.sum() and strict.node_mask[8:].all()
    assert torch.isclose(kept.cumulative_scores.max(), torch.tensor(1.0))
    with pytest.raises(InterpError, match="node_threshold"):
        prune_graph(graph, node_threshold=1.5)


def test_scores_are_one_without_error_contributions_and_match_the_closed_form_with_them():
    without_errors = hand_built({edge: w for edge, w in EDGES.items() if not 4 <= edge[1] <= 7})
    assert compute_graph_scores(without_errors) == pytest.approx((1.0, 1.0), abs=1e-6)
    graph = hand_built()
    replacement, completeness = compute_graph_scores(graph)
    influence = closed_form(graph)
    assert replacement == pytest.approx(float(influence[8:10].sum() / (influence[8:10].sum() + influence[4:8].sum())), rel=1e-5)
    assert 0 < completeness < 1


def test_a_real_graph_scores_in_the_unit_interval_and_prunes(load_tiny):
    from interp.dictionaries.dictionary import SparseDictionary
    from interp.model import model_id
    from interp.model.weights import weights_hash

    model = load_tiny("gpt2")
    generator = torch.Generator().manual_seed(1)
    d = int(model.cfg.d_model)
    transcoders = [
        SparseDictionary(W_enc=torch.randn(d, 32, generator=generator) / d**0.5, b_enc=torch.full((32,), 0.2),
                         W_dec=torch.randn(32, d, generator=generator) * 0.01, b_dec=torch.zeros(d), activation="relu",
                         site=f"blocks.{layer}.ln2.hook_normalized", output_site=f"blocks.{layer}.hook_mlp_out",
                         model_id=model_id(model), weights_hash=weights_hash(model))
        for layer in range(int(model.cfg.n_layers))
    ]  # fmt: skip
    graph = attribute(model, "the cat sat on the mat", transcoders, batch_size=8, progress=False)
    replacement, completeness = compute_graph_scores(graph)
    assert 0 <= replacement <= 1 and 0 <= completeness <= 1
    kept = prune_graph(graph)
    assert kept.node_mask[graph.slice_of("token").start :].all() and kept.node_mask.sum() < graph.n_nodes
