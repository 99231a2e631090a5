"""Interventions on graph features in the real model (``interp.graphs.intervene``), on a tiny random Llama with
random transcoders:

- ablating a feature that is zero on the prompt (or scaling any feature by 1) changes nothing, exactly;
- an intervention set (two layers, a clamp and an ablation) equals the same edit written by hand with hooks, the codes
  computed live from the edited run;
- a last-layer feature at the last position scaled by ``1 + ε`` moves a logit by the graph's direct edge times ``ε``
  (the edge holds the activation): with the final norm's scale held at its unedited value the path from that
  ``mlp_out`` to the logits is linear, so direct = total exactly (up to float32);
- supernodes: named sets run separately, ``top_influence_features`` names the graph's features in influence order;
- bad input (unknown layer or feature, a position outside the prompt, values that do not fit, value and scale) is one
  InterpError line.
"""

import pytest
import torch

from interp.errors import InterpError
from interp.graphs import attribute, freeze, intervene, node_influence, top_influence_features
from interp.metrics import last_logits

from test_attribution_exact import PROMPT, random_transcoders

ARCH = "llama"
_CACHE: dict[str, tuple] = {}


def setting(load_tiny):
    if ARCH not in _CACHE:
        model = load_tiny(ARCH)
        transcoders = random_transcoders(model)
        graph = attribute(model, PROMPT, transcoders, batch_size=16, progress=False)
        _CACHE[ARCH] = (model, transcoders, graph, freeze(model, PROMPT, transcoders))
    return _CACHE[ARCH]


def demeaned_logit(token: int):
    """The graph's logit target: ``logit_t − mean_v logit_v`` at the last position."""

    def metric(logits, last=None):
        final = last_logits(logits, last)
        return final[:, token] - final.mean(-1)

    return metric


def test_ablating_a_zero_feature_or_scaling_by_one_changes_nothing_exactly(load_tiny):
    model, transcoders, graph, frozen = setting(load_tiny)
    silent = [(layer, pos, int(torch.nonzero(frozen.layers[layer].codes[pos] == 0)[0])) for layer, pos in ((0, 2), (1, 5))]
    top = int(graph.logit_tokens[0])
    result = intervene(model, transcoders, {"zero": silent, "another": silent[:1]}, PROMPT, target=top)
    assert torch.equal(result.after, result.before.expand(2, 1)), (result.before, result.after)
    active = [tuple(row) for row in graph.active_features[:3].tolist()]
    unchanged = intervene(model, transcoders, active, PROMPT, target=top, scale=1.0)
    assert torch.equal(unchanged.after, unchanged.before[None])
    assert unchanged.set_names == ("features",) and unchanged.set_features("features") == active


def test_an_intervention_equals_the_same_edit_written_by_hand(load_tiny):
    model, transcoders, graph, _ = setting(load_tiny)
    early = [tuple(row) for row in graph.active_features.tolist() if row[0] == 0 and row[1] >= 1][0]
    later = [tuple(r) for r in graph.active_features.tolist() if r[0] == graph.n_layers - 1 and early[1] < r[1] < 6][0]
    edits = [(early, 10.0), (later, 0.0)]  # a clamp upstream, an ablation downstream (its code read after the clamp)
    token = int(graph.logit_tokens[0])
    result = intervene(model, transcoders, [e for e, _ in edits], [PROMPT, "a cat sat on the mat"], target=token,
                       value=[v for _, v in edits])  # fmt: skip
    seen = {}

    def remember(layer):
        def hook(acts, hook=None):
            seen[layer] = acts
            return acts

        return hook

    def add(layer, pos, feature, value):
        def hook(acts, hook=None):
            code = transcoders[layer].encode(seen[layer][0, pos].float())[feature]
            out = acts.clone()
            out[0, pos] += (value - code) * transcoders[layer].W_dec[feature]
            return out

        return hook

    hooks = []
    for (layer, pos, feature), value in edits:
        hooks += [(f"blocks.{layer}.ln2.hook_normalized", remember(layer)), (f"blocks.{layer}.hook_mlp_out", add(layer, pos, feature, value))]
    for index, prompt in enumerate([PROMPT, "a cat sat on the mat"]):
        tokens = model.to_tokens(prompt)
        with torch.no_grad():
            plain = model(tokens)[0, -1, token]
            with model.hooks(fwd_hooks=hooks):
                by_hand = model(tokens)[0, -1, token]
        assert torch.allclose(result.before[index], plain, rtol=0, atol=1e-6), (result.before, plain)
        assert torch.allclose(result.after[0, index], by_hand, rtol=0, atol=1e-6), (result.after, by_hand)
    assert float(result.effect.abs().max()) > 1e-4  # the edit does something (the tiny model's logits are ~0.4)


@pytest.mark.filterwarnings("ignore:A forward hook edited hook_scale")  # the frozen final norm scale, on purpose
def test_a_last_layer_feature_moves_a_logit_by_its_direct_edge(load_tiny):
    model, transcoders, graph, frozen = setting(load_tiny)
    last_layer, last_pos = graph.n_layers - 1, graph.n_pos - 1
    logit_node = graph.slice_of("logit").start
    token = int(graph.logit_tokens[0])
    candidates = [i for i, (layer, pos, _) in enumerate(graph.active_features.tolist()) if (layer, pos) == (last_layer, last_pos)]
    chosen = max(candidates, key=lambda i: float(graph.adjacency[logit_node, i].abs()))
    edge = float(graph.adjacency[logit_node, chosen])
    assert abs(edge) > 1e-3
    feature = tuple(graph.active_features[chosen].tolist())
    final_scale = {}

    def keep_scale(scale, hook=None):
        final_scale.setdefault("unedited", scale[:1].clone())
        return final_scale["unedited"].expand_as(scale)

    epsilon = 1e-2
    with model.hooks(fwd_hooks=[("ln_final.hook_scale", keep_scale)]):
        result = intervene(model, transcoders, [feature], PROMPT, target=demeaned_logit(token), scale=1 + epsilon)
    change = float(result.effect[0, 0])
    assert abs(change - edge * epsilon) <= 1e-3 * abs(edge * epsilon) + 1e-6, (change, edge * epsilon)
    # the frozen norm is what makes it exact: the model's own norm moves it at first order too
    free = intervene(model, transcoders, [feature], PROMPT, target=demeaned_logit(token), scale=1 + epsilon)
    assert float(free.effect[0, 0]) != pytest.approx(change, rel=1e-6)


def test_supernodes_from_the_graphs_most_influential_features(load_tiny):
    model, transcoders, graph, _ = setting(load_tiny)
    influence = node_influence(graph)[graph.slice_of("feature")]
    top = top_influence_features(graph, 4)
    assert [graph.node_index("feature", *f) for f in top] == influence.argsort(descending=True)[:4].tolist()
    token = int(graph.logit_tokens[0])
    by_logit = top_influence_features(graph, 2, logit=token)
    assert by_logit == top_influence_features(graph, 2, logit=graph.logit_strings[0])
    nodes = [graph.nodes[graph.node_index("feature", *f)] for f in top[2:]]
    result = intervene(model, transcoders, {"top two": top[:2], "next two": nodes}, PROMPT, target=token)
    assert result.set_names == ("top two", "next two") and result.after.shape == (2, 1)
    alone = intervene(model, transcoders, top[:2], PROMPT, target=token)
    assert torch.allclose(alone.after[0], result.after[0], atol=1e-5)
    last = [(layer, pos - graph.n_pos, f) for layer, pos, f in top[:2]]  # negative positions count from the end
    assert torch.equal(intervene(model, transcoders, last, PROMPT, target=token).after, alone.after)
    removed = result.fraction_removed()
    assert removed["top two"] == pytest.approx(float(1 - result.after[0, 0] / result.before[0]), rel=1e-5)


@pytest.mark.parametrize(
    "features, options, message",
    [
        ([(9, 0, 0)], {}, "layer 9 does not exist"),
        ([(0, 0, 10_000)], {}, "feature 10000 does not exist"),
        ([(0, 40, 1)], {}, "position 40 is outside the prompt"),
        ([(0, 1, 1), (0, 2, 1)], {"value": [1.0]}, "2 features but 1 values"),
        ([(0, 1, 1)], {"value": 1.0, "scale": 2.0}, "not both"),
        ([(0, 1, 1), (0, 1, 1)], {}, "names a feature twice"),
        ([(0, 1)], {}, "a feature is (layer, position, feature index)"),
        ({"empty": []}, {}, "has no features"),
    ],
)
def test_bad_input_is_one_line(load_tiny, features, options, message):
    model, transcoders, _, _ = setting(load_tiny)
    with pytest.raises(InterpError) as caught:
        intervene(model, transcoders, features, PROMPT, target=3, **options)
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_a_missing_transcoder_and_a_non_feature_node_are_refused(load_tiny):
    model, transcoders, graph, _ = setting(load_tiny)
    with pytest.raises(InterpError, match="no transcoder"):
        intervene(model, {0: transcoders[0]}, [(1, 0, 0)], PROMPT, target=3)
    with pytest.raises(InterpError, match="only feature nodes"):
        intervene(model, transcoders, [graph.nodes[graph.slice_of("error").start]], PROMPT, target=3)
