"""Attribution graphs are exact in their frozen replacement model, on tiny random models of every architecture.

- the frozen replacement's logits equal the model's own (relative error below 1e-5, float32);
- every feature and logit node's incoming edges plus its bias reproduce its value (pre-activation, demeaned logit),
  the bias measured independently by a frozen forward with every node's contribution removed;
- sampled edges equal the change of their target when the source's contribution is removed in the frozen forward
  (one intervention per edge): relative 1e-3 for feature targets, 1e-5 for logit targets (with an absolute floor
  set by float32 rounding of the target itself);
- bad input (a missing layer, another model's or another site's transcoder, a prompt longer than the context) is one
  InterpError line.
"""

import random

import pytest
import torch

from interp.dictionaries.dictionary import SparseDictionary
from interp.errors import InterpError
from interp.graphs import Graph, attribute, freeze
from interp.model import model_id
from interp.model.weights import weights_hash

ARCHITECTURES = ("gpt2", "llama", "qwen2", "gemma", "gemma2")
PROMPT = "the quick brown fox jumps over the lazy dog"
D_SAE = 48


def random_transcoders(model, seed: int = 0, activation: str = "relu", skip: bool = False) -> list[SparseDictionary]:
    """One random transcoder per layer; encoder biases positive enough that many features fire, outputs the size of
    the layer's real MLP output (so that the error nodes do not cancel a much larger transcoder output)."""
    generator = torch.Generator().manual_seed(seed)
    d = int(model.cfg.d_model)
    _, cache = model.run_with_cache(PROMPT)
    size = [float(cache[f"blocks.{layer}.hook_mlp_out"].pow(2).mean().sqrt()) for layer in range(int(model.cfg.n_layers))]

    def normal(*shape, std=1.0):
        return torch.randn(*shape, generator=generator) * std

    return [
        SparseDictionary(
            W_enc=normal(d, D_SAE, std=d**-0.5),
            b_enc=normal(D_SAE, std=0.2) + 0.1,
            W_dec=normal(D_SAE, d, std=0.3 * size[layer]),
            b_dec=normal(d, std=0.1 * size[layer]),
            activation=activation,
            k=8 if activation == "topk" else None,
            W_skip=normal(d, d, std=0.3 * size[layer] / d**0.5) if skip else None,
            site=f"blocks.{layer}.ln2.hook_normalized",
            output_site=f"blocks.{layer}.hook_mlp_out",
            model_id=model_id(model),
            weights_hash=weights_hash(model),
        )
        for layer in range(int(model.cfg.n_layers))
    ]


def transcoders_for(model, arch: str) -> list[SparseDictionary]:
    """ReLU transcoders, TopK ones for GPT-2 and Gemma, a skip connection for Llama and Gemma 2."""
    activation = "topk" if arch in ("gpt2", "gemma") else "relu"
    return random_transcoders(model, activation=activation, skip=arch in ("llama", "gemma2"))


_GRAPHS: dict[str, tuple] = {}


def graph_of(load_tiny, arch: str):
    if arch not in _GRAPHS:
        model = load_tiny(arch)
        transcoders = transcoders_for(model, arch)
        graph = attribute(model, PROMPT, transcoders, batch_size=16, progress=False)
        _GRAPHS[arch] = (model, transcoders, graph, freeze(model, PROMPT, transcoders))
    return _GRAPHS[arch]


def target_values(frozen, run, graph: Graph) -> torch.Tensor:
    """Every feature node's pre-activation and every logit node's demeaned logit in a frozen run (batch row 0)."""
    values = [frozen.pre_activations(run, layer)[0, pos, f] for layer, pos, f in graph.active_features.tolist()]
    logits = frozen.unembed(run.final_normalized[0, -1])
    values += list(logits[graph.logit_tokens] - logits.mean())
    return torch.stack(values)


def zero_scales(frozen):
    return dict(
        feature_scales=[torch.zeros(1, *layer.codes.shape) for layer in frozen.layers],
        error_scales=torch.zeros(1, frozen.n_layers, frozen.n_pos),
        token_scales=torch.zeros(1, frozen.n_pos),
    )


def one_scales(frozen):
    dtype = frozen.token_vectors.dtype
    return dict(
        feature_scales=[torch.ones(1, *layer.codes.shape, dtype=dtype) for layer in frozen.layers],
        error_scales=torch.ones(1, frozen.n_layers, frozen.n_pos, dtype=dtype),
        token_scales=torch.ones(1, frozen.n_pos, dtype=dtype),
    )


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_frozen_replacement_reproduces_the_models_logits(load_tiny, arch):
    model = load_tiny(arch)
    frozen = freeze(model, PROMPT, transcoders_for(model, arch))
    logits = frozen.logits(frozen.forward())[0]
    with torch.no_grad():
        real = model(frozen.tokens[None])[0].float()
    error = float((logits - real).abs().max() / real.abs().max())
    assert error < 1e-5, error
    assert sum(int((layer.codes != 0).sum()) for layer in frozen.layers) > 20  # the transcoders take part


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_incoming_edges_plus_the_bias_reproduce_every_target(load_tiny, arch):
    _, _, graph, frozen = graph_of(load_tiny, arch)
    assert graph.feature_order == "all" and graph.n_features == graph.n_active_features > 20
    with torch.no_grad():
        values = target_values(frozen, frozen.forward(), graph)
        bias = target_values(frozen, frozen.forward(**zero_scales(frozen)), graph)  # every contribution removed
    targets = torch.cat([torch.arange(graph.n_features), torch.arange(graph.n_logits) + graph.slice_of("logit").start])
    incoming = graph.adjacency[targets].sum(-1)
    scale = graph.adjacency[targets].abs().sum(-1) + values.abs() + bias.abs()
    error = float(((values - incoming - bias).abs() / scale).max())
    assert error < 1e-5, error
    assert graph.adjacency[graph.slice_of("error")].abs().sum() == 0 and graph.adjacency[:, graph.slice_of("logit")].abs().sum() == 0


def _scales_without(frozen, node):
    scales = one_scales(frozen)
    if node.kind == "feature":
        scales["feature_scales"][node.layer][0, node.position, node.item] = 0.0
    elif node.kind == "error":
        scales["error_scales"][0, node.layer, node.position] = 0.0
    else:
        scales["token_scales"][0, node.position] = 0.0
    return scales


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_sampled_edges_equal_the_effect_of_removing_their_source(load_tiny, arch):
    _, _, graph, frozen = graph_of(load_tiny, arch)
    nodes = graph.nodes
    rng = random.Random(0)
    sources = [i for i in range(graph.slice_of("logit").start)]
    feature_targets = [i for i in range(graph.n_features) if graph.active_features[i, 0] > 0]
    logit_targets = list(range(graph.slice_of("logit").start, graph.n_nodes))
    pairs = []
    for target in rng.sample(feature_targets, min(12, len(feature_targets))) + logit_targets:
        nonzero = [s for s in sources if graph.adjacency[target, s] != 0]
        kinds = {nodes[s].kind: s for s in rng.sample(nonzero, len(nonzero))}  # one source of each kind
        pairs += [(target, source) for source in kinds.values()]
    assert {nodes[s].kind for _, s in pairs} == {"feature", "error", "token"}
    exact = frozen.to(torch.float64)  # the interventions without float32 rounding of the targets
    with torch.no_grad():
        full = target_values(exact, exact.forward(), graph)
        worst = {"feature": 0.0, "logit": 0.0}
        for target, source in pairs:
            removed = target_values(exact, exact.forward(**_scales_without(exact, nodes[source])), graph)
            row = target if target < graph.n_features else graph.n_features + target - graph.slice_of("logit").start
            change = float(full[row] - removed[row])
            edge = float(graph.adjacency[target, source])
            floor = 1e-6 * float(graph.adjacency[target].abs().max())  # float32 rounding of the edges themselves
            kind = nodes[target].kind
            worst[kind] = max(worst[kind], abs(edge - change) / max(abs(change), floor))
    assert worst["feature"] < 1e-3 and worst["logit"] < 1e-5, worst


def test_a_cap_keeps_the_most_influential_features_and_node_lookup(load_tiny, tmp_path):
    model, transcoders, full, _ = graph_of(load_tiny, "llama")
    capped = attribute(model, PROMPT, transcoders, max_feature_nodes=10, batch_size=4, progress=False)
    assert capped.n_features == 10 and capped.feature_order == "logit influence"
    assert capped.n_active_features == full.n_active_features
    for layer, pos, feature in capped.active_features.tolist():  # the capped graph's edges are the full graph's
        row_capped = capped.node_index("feature", layer, pos, feature)
        row_full = full.node_index("feature", layer, pos, feature)
        token = capped.node_index("token", position=0)
        assert torch.allclose(capped.adjacency[row_capped, token], full.adjacency[row_full, full.node_index("token", position=0)])
    logit = int(capped.logit_tokens[0])
    assert capped.nodes[capped.node_index("logit", index=logit)].kind == "logit"
    assert capped.nodes[capped.node_index("error", 1, 2)][:3] == ("error", 1, 2)
    with pytest.raises(InterpError, match="no feature node"):
        capped.node_index("feature", 0, 0, 10_000)
    loaded = Graph.load(capped.save(tmp_path / "graph"))
    assert torch.equal(loaded.adjacency, capped.adjacency) and loaded.nodes == capped.nodes
    assert loaded.provenance == capped.provenance and (tmp_path / "graph" / "graph.html").is_file()


def test_bad_input_is_one_line(load_tiny):
    model = load_tiny("llama")
    transcoders = random_transcoders(model)
    other = load_tiny("qwen2")
    cases = {
        "none for layer": lambda: attribute(model, PROMPT, transcoders[:1], progress=False),
        "trained on": lambda: attribute(model, PROMPT, [transcoders[0], random_transcoders(other)[1]], progress=False),
        "attribution graphs need blocks.1.ln2.hook_normalized": lambda: attribute(
            model, PROMPT, [transcoders[0], transcoders[1].with_provenance(site="blocks.1.hook_resid_mid")], progress=False
        ),
        "context": lambda: attribute(model, [5] * (int(model.cfg.n_ctx) + 1), transcoders, progress=False),
    }
    for expected, call in cases.items():
        with pytest.raises(InterpError, match=expected) as caught:
            call()
        assert "\n" not in str(caught.value)
