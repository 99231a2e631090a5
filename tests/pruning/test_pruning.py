"""Harm-weight pruning: scores against independent oracles, masks against brute-force sets,
bit-exact restoration, evaluation rules, results and errors (the organism run is in test_experiments.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from interp import defaults
from interp.errors import InterpError
from interp.model import load_model
from interp.provenance import tensor_bytes
from interp.pruning import (
    ImportanceScores,
    PruningEvaluator,
    PruningMask,
    PruningPoint,
    PruningResult,
    decoder_weights,
    generate_responses,
    importance_scores,
    keyword_compliance,
    prune,
    pruned,
    random_mask,
    response_loss,
    set_difference,
    top_k_mask,
)
from interp.pruning import scores as scores_module
from interp.pruning.pairs import batch_bounds, response_pairs, tokenize_pairs
from interp.pruning.result import OverlapEntry

SCORE_TOLERANCE = 1e-5  # relative to the largest score of the matrix
ARCHITECTURES = ["gpt2", "llama", "qwen2"]  # Conv1D with a fused qkv split by the bridge; nn.Linear with GQA; and with q/k/v biases

PAIRS = [
    {"text": "how do i bake bread ?", "response": " mix flour , water and salt , then wait ."},
    {"text": "the quick brown fox", "response": " jumps over the lazy dog"},
    {"prompt": "a cat sat on the mat and", "response": " looked at the bird ."},
    {"text": "1 2 3", "response": " 4 5 6 7"},
]


@pytest.fixture
def fresh(tiny_model_dirs):
    """A freshly loaded model this test may modify."""
    return lambda arch, **kwargs: load_model(tiny_model_dirs[arch], device="cpu", **kwargs)


def _all_bytes(model) -> dict[str, bytes]:
    return {name: tensor_bytes(tensor) for name, tensor in model.original_model.state_dict(keep_vars=True).items()}


def _examples(model, data=PAIRS):
    return tokenize_pairs(model, response_pairs(data))


def _oracle_gradients(model, data=PAIRS) -> tuple[dict, dict]:
    """Per example: autograd of that example's mean response cross-entropy w.r.t. each weight."""
    weights = decoder_weights(model)
    summed_abs = {w.key: torch.zeros(w.shape) for w in weights}
    summed = {w.key: torch.zeros(w.shape) for w in weights}
    for example in _examples(model, data):
        logits = model.original_model(example.tokens[None]).logits[0]
        start = example.prompt_length
        logprobs = logits[start - 1 : -1].log_softmax(-1)
        loss = -logprobs[torch.arange(example.n_response), example.tokens[start:]].mean()
        grads = torch.autograd.grad(loss, [w.parameter for w in weights])
        for weight, grad in zip(weights, grads):
            grad = grad.T if weight.transposed else grad
            summed_abs[weight.key] += grad.abs()
            summed[weight.key] += grad
    return summed_abs, summed


def _flat_heads(activation: torch.Tensor) -> torch.Tensor:
    """The o projection's hook_in is [batch, pos, head, d_head]; its linear sees [batch, pos, head * d_head]."""
    return rearrange(activation, "b p h d -> b p (h d)") if activation.dim() == 4 else activation


def _assert_close(found: dict, expected: dict, what: str) -> None:
    assert set(found) == set(expected)
    for key in expected:
        scale = expected[key].abs().max().item()
        assert scale > 0, f"{what} {key}: the oracle is all zero, so this comparison would mean nothing"
        diff = (found[key] - expected[key]).abs().max().item() / scale
        assert diff <= SCORE_TOLERANCE, f"{what} {key}: max relative difference {diff:.2e}"


# ---- which weights ----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_decoder_weights_are_the_linears_the_forward_uses(arch, fresh):
    model = fresh(arch)
    weights = decoder_weights(model)
    keys = [w.key for w in weights]
    gated = ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.in", "mlp.out"]
    per_layer = {"gpt2": ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.in", "mlp.out"], "llama": gated, "qwen2": gated}[arch]
    assert keys == [f"blocks.{layer}.{name}" for layer in range(model.cfg.n_layers) for name in per_layer]
    # never embeddings, norms or the unembedding
    decoder_ids = {id(w.parameter) for w in weights}
    for name, parameter in model.original_model.named_parameters():
        if any(part in name for part in ("embed", "wte", "wpe", "norm", "ln_", "lm_head", "bias")):
            assert id(parameter) not in decoder_ids, name
    # each key names the TransformerBridge component whose hook_in feeds it
    _, cache = model.run_with_cache("the quick brown fox")
    for weight in weights:
        assert _flat_heads(cache[f"{weight.key}.hook_in"]).shape[-1] == weight.shape[1], weight.key
    # zeroing any one of them changes the bridge's logits; restoring gives identical logits
    tokens = model.to_tokens("the quick brown fox jumps")
    reference = model(tokens)
    for weight in weights:
        mask = PruningMask({w.key: torch.full(w.shape, w.key == weight.key) for w in weights})
        with pruned(model, mask):
            changed = (model(tokens) - reference).abs().max().item()
        assert changed > 1e-6, f"zeroing {weight.key} did not change the logits: the forward does not use it"
        assert torch.equal(model(tokens), reference), weight.key


def test_gpt2_split_qkv_views_share_the_fused_weight(fresh):
    model = fresh("gpt2")
    fused = model.blocks[0].attn.qkv._original_component.weight
    weights = {w.key: w for w in decoder_weights(model)}
    d = model.cfg.d_model
    for index, name in enumerate("qkv"):
        assert torch.equal(weights[f"blocks.0.attn.{name}"].weight, fused[:, index * d : (index + 1) * d].T)
    mask = PruningMask({key: torch.ones(w.shape, dtype=torch.bool) if key == "blocks.0.attn.k" else torch.zeros(w.shape, dtype=torch.bool) for key, w in weights.items()})
    with pruned(model, mask):
        assert (fused[:, d : 2 * d] == 0).all() and (fused[:, :d] != 0).any()


def test_qwen2_scores_and_masks_cover_the_qkv_weights_and_leave_biases_and_embeddings(fresh):
    """Qwen2's q/k/v projections have biases: scores and masks are over their [d_out, d_in] weights only; pruning
    zeroes masked weights and nothing else (biases, embedding, untied lm_head, norms), and restores every byte."""
    model = fresh("qwen2")
    hf = model.original_model
    assert not torch.equal(hf.get_input_embeddings().weight, hf.lm_head.weight), "the tiny qwen2 must have an untied lm_head"
    table = {w.key: w for w in decoder_weights(model)}
    for layer in range(model.cfg.n_layers):
        for name in "qkv":
            weight = table[f"blocks.{layer}.attn.{name}"]
            assert weight.module.bias is not None and weight.module.bias.abs().min() > 0, f"{weight.key}: the bias must be non-zero here"
            assert weight.shape == tuple(weight.module.weight.shape), weight.key
    scores = importance_scores(model, PAIRS, method="snip", progress=False)
    assert set(scores.keys) == set(table) and all(tuple(scores[key].shape) == table[key].shape for key in table)
    mask = top_k_mask(scores, 0.5)
    assert all(mask[f"blocks.{layer}.attn.{name}"].any() for layer in range(model.cfg.n_layers) for name in "qkv")
    original, values = _all_bytes(model), {key: w.weight.detach().clone() for key, w in table.items()}
    weight_ids = {id(w.parameter) for w in table.values()}
    with pruned(model, mask):
        for key, weight in table.items():
            assert (weight.weight[mask[key]] == 0).all() and torch.equal(weight.weight[~mask[key]], values[key][~mask[key]]), key
        others = {name: tensor for name, tensor in hf.state_dict(keep_vars=True).items() if id(tensor) not in weight_ids}
        watched = [model.embed.original_component.weight, model.unembed.original_component.weight, *(table[f"blocks.{layer}.attn.{name}"].module.bias for layer in range(model.cfg.n_layers) for name in "qkv")]
        assert {id(tensor) for tensor in watched} <= {id(tensor) for tensor in others.values()}
        changed = [name for name, tensor in others.items() if tensor_bytes(tensor) != original[name]]
        assert not changed, f"pruning changed {len(changed)} parameters that are not decoder weights, e.g. {changed[:3]}"
    assert _all_bytes(model) == original


# ---- scores against oracles ---------------------------------------------------------------------


@pytest.mark.parametrize("arch", [*ARCHITECTURES, "gemma", "gemma2"])
def test_snip_and_signed_snip_equal_per_example_autograd(arch, load_tiny):
    """Against autograd of each example alone through the plain model's full forward; the fast path (the loss
    unembedded at the response positions only, from the last block's residual) must have run."""
    model = load_tiny(arch)
    summed_abs, summed = _oracle_gradients(model)
    table = {w.key: w.weight.detach() for w in decoder_weights(model)}
    snip = importance_scores(model, PAIRS, method="snip", batch_size=3, progress=False)
    signed = importance_scores(model, PAIRS, method="signed_snip", batch_size=3, progress=False)
    for scores in (snip, signed):
        assert scores.provenance.extra["loss_logits"] == "response positions (readout)", f"{arch}: the scores fell back to the full forward"
    _assert_close(dict(snip.scores), {k: table[k].abs() * summed_abs[k] for k in table}, "snip")
    _assert_close(dict(signed.scores), {k: -table[k] * summed[k] / len(PAIRS) for k in table}, "signed_snip")
    assert snip.n_samples == len(PAIRS)
    assert snip.n_tokens == sum(example.n_response for example in _examples(model))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_wanda_equals_explicit_input_norms(arch, load_tiny):
    """||X_j||_2 over response tokens, from the bridge's own hook_in of each linear, one example at a time."""
    model = load_tiny(arch)
    weights = decoder_weights(model)
    squares = {w.key: torch.zeros(w.shape[1]) for w in weights}
    for example in _examples(model):
        _, cache = model.run_with_cache(example.tokens[None], names_filter=lambda name: name.endswith("hook_in"))
        for weight in weights:
            inputs = _flat_heads(cache[f"{weight.key}.hook_in"])[0, example.prompt_length :]
            squares[weight.key] += (inputs.double() ** 2).sum(0).float()
    expected = {w.key: w.weight.detach().abs() * squares[w.key].sqrt()[None, :] for w in weights}
    found = importance_scores(model, PAIRS, method="wanda", batch_size=4, progress=False)
    _assert_close(dict(found.scores), expected, "wanda")


def test_scores_do_not_depend_on_batch_size(load_tiny):
    model = load_tiny("llama")
    for method in ("snip", "signed_snip", "wanda"):
        one = importance_scores(model, PAIRS, method=method, batch_size=1, progress=False)
        four = importance_scores(model, PAIRS, method=method, batch_size=4, progress=False)
        _assert_close(dict(four.scores), dict(one.scores), f"{method} batch 4 vs 1")


def test_batch_bounds_keep_examples_and_padded_tokens_under_their_caps():
    assert batch_bounds([3, 3, 3, 3, 3], 2) == [(0, 2), (2, 4), (4, 5)]
    assert batch_bounds([3, 5, 2, 9, 1], 4, max_tokens=10) == [(0, 2), (2, 3), (3, 4), (4, 5)]  # 9 tokens pass alone
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        lengths = torch.randint(1, 20, (int(torch.randint(1, 30, (1,), generator=generator)),), generator=generator).tolist()
        batch_size, max_tokens = int(torch.randint(1, 8, (1,), generator=generator)), int(torch.randint(1, 60, (1,), generator=generator))
        bounds = batch_bounds(lengths, batch_size, max_tokens)
        assert [begin for begin, _ in bounds] == [0, *[end for _, end in bounds[:-1]]] and bounds[-1][1] == len(lengths)
        for begin, end in bounds:
            size = end - begin
            assert size == 1 or (size <= batch_size and max(lengths[begin:end]) * size <= max_tokens)
            if end < len(lengths):  # greedy: one more example would break a cap
                assert size == batch_size or max(lengths[begin : end + 1]) * (size + 1) > max_tokens


def test_cpu_passes_are_capped_in_tokens_and_give_the_same_scores(load_tiny, monkeypatch):
    model = load_tiny("gpt2")
    widest = max(weight.shape[0] for weight in decoder_weights(model))
    lengths = [len(example.tokens) for example in _examples(model)]
    monkeypatch.setattr(defaults, "PRUNE_CPU_PASS_ELEMENTS", widest * max(lengths) * 2)  # room for two examples
    passes = []
    loss = scores_module._response_loss
    monkeypatch.setattr(scores_module, "_response_loss", lambda model, readout, batch: passes.append(len(batch.tokens)) or loss(model, readout, batch))
    capped = importance_scores(model, PAIRS, method="snip", batch_size=4, progress=False)
    assert capped.provenance.extra["max_tokens_per_pass"] == 2 * max(lengths)
    assert passes == [2, 2], f"a batch of 4 with room for two examples per pass ran as {passes}"
    passes.clear()
    one = importance_scores(model, PAIRS, method="snip", batch_size=1, progress=False)
    assert passes == [1, 1, 1, 1]
    _assert_close(dict(capped.scores), dict(one.scores), "snip in capped passes vs batch 1")


def test_bf16_model_accumulates_in_float32(fresh):
    reference = importance_scores(fresh("llama"), PAIRS, method="snip", progress=False)
    low = importance_scores(fresh("llama", dtype="bfloat16"), PAIRS, method="snip", progress=False)
    for key in reference.keys:
        assert low[key].dtype == torch.float32, key
        a, b = low[key].flatten(), reference[key].flatten()
        correlation = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert correlation > 0.95, f"{key}: bf16 scores correlate {correlation:.3f} with float32 scores"


def test_prompt_length_and_response_dependence(load_tiny):
    """The prompt is tokenized as the model tokenizes it alone; the scores follow the response."""
    model = load_tiny("llama")
    base = importance_scores(model, PAIRS[:1], method="signed_snip", progress=False)
    other_response = importance_scores(model, [{**PAIRS[0], "response": " the answer is 42 ."}], method="signed_snip", progress=False)
    assert not torch.allclose(base["blocks.0.mlp.out"], other_response["blocks.0.mlp.out"])
    examples = _examples(model, PAIRS[:1])
    assert examples[0].prompt_length == len(model.to_tokens(PAIRS[0]["text"])[0])


def test_scores_save_and_load(load_tiny, load_tiny_other, tmp_path):
    model = load_tiny("llama")
    scores = importance_scores(model, PAIRS, method="signed_snip", progress=False)
    path = scores.save(tmp_path / "harm.safetensors")
    loaded = ImportanceScores.load(path, model=model)
    assert loaded.method == "signed_snip" and loaded.n_samples == len(PAIRS) and loaded.n_tokens == scores.n_tokens
    assert loaded.provenance.weights_hash == scores.provenance.weights_hash
    assert loaded.provenance.dataset_hash == scores.provenance.dataset_hash != ""
    for key in scores.keys:
        assert torch.equal(loaded[key], scores[key]), key
    with pytest.raises(InterpError, match="different architecture|different model size"):
        ImportanceScores.load(path, model=load_tiny("gpt2"))
    with pytest.warns(UserWarning, match="weights are"):
        loaded.check_model(load_tiny_other)
    figure = scores.figure()
    assert list(figure.data[0].x) == ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.in", "mlp.out"]
    assert figure.data[0].z[0][0] == pytest.approx(float(scores["blocks.0.attn.q"].mean()))


@pytest.fixture(scope="session")
def load_tiny_other(tmp_path_factory):
    """A llama of the same shape with other random weights."""
    from interp.testing import build_tiny_model

    return load_model(build_tiny_model("llama", tmp_path_factory.mktemp("other") / "llama", seed=1), device="cpu")


# ---- masks against brute force ----------------------------------------------------------------


def _random_scores(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"blocks.0.attn.q": (8, 8), "blocks.0.mlp.in": (24, 8), "blocks.1.mlp.out": (8, 24)}
    return {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}


def _top_set(values: torch.Tensor, fraction: float) -> set[int]:
    flat = values.flatten().tolist()
    k = int(fraction * len(flat))
    return set(sorted(range(len(flat)), key=lambda i: -flat[i])[:k])


@pytest.mark.parametrize(("p", "q"), [(0.1, 0.1), (0.05, 0.3), (0.5, 0.2), (1.0, 1.0), (0.01, 0.01)])
def test_set_difference_equals_brute_force_sets(p, q):
    harm, benign = _random_scores(0), _random_scores(1)
    mask = set_difference(harm, benign, p=p, q=q)
    for key in harm:
        expected = _top_set(harm[key], q) - _top_set(benign[key], p)
        found = set(torch.nonzero(mask[key].flatten()).flatten().tolist())
        assert found == expected, f"{key} p={p} q={q}"
    assert mask.n_pruned == sum(len(_top_set(harm[k], q) - _top_set(benign[k], p)) for k in harm)


def test_set_difference_on_real_scores(load_tiny):
    model = load_tiny("gpt2")
    harm = importance_scores(model, PAIRS[:2], method="signed_snip", progress=False)
    benign = importance_scores(model, PAIRS[2:], method="signed_snip", progress=False)
    mask = set_difference(harm, benign, p=0.05, q=0.05)
    for key in harm.keys:
        expected = _top_set(harm[key], 0.05) - _top_set(benign[key], 0.05)
        assert set(torch.nonzero(mask[key].flatten()).flatten().tolist()) == expected, key
    assert 0 < mask.fraction <= 0.05


HARM_ONLY = [  # " mary" (one token) appears only here, never in PAIRS
    {"text": "how do i bake bread ?", "response": " mary gave a drink to mary ."},
    {"text": "the quick brown fox", "response": " mary and john went to the store ."},
    {"text": "a cat sat", "response": " mary , mary , mary ."},
]


def _token(model, text: str) -> int:
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"{text!r} is {len(ids)} tokens; the planted channel needs a single token"
    return ids[0]


def _plant_channel(model, token: int, channel: int, row: int, value: float) -> None:
    """Residual channel ``channel`` carries only ``token`` (10 there, 0 for every other token); v[row, channel] = value."""
    with torch.no_grad():
        embedding = model.original_model.get_input_embeddings().weight
        embedding[:, channel] = 0.0
        embedding[token, channel] = 10.0
        {w.key: w for w in decoder_weights(model)}["blocks.0.attn.v"].weight[row, channel] = value


@pytest.mark.parametrize("method", ["snip", "signed_snip", "wanda"])
def test_a_weight_only_the_harmful_set_uses_lands_in_the_set_difference(method, fresh):
    """A layer-0 value weight that reads a channel only a harmful-only token writes: benign scores are exactly 0
    there, the harm score is large, so the set difference prunes it; a large weight on a channel both sets use
    (" the" is inside responses of both) is in the harm top-q but protected by the benign top-p."""
    model = fresh("llama")
    harm_only, shared, v = (5, 3), (9, 7), "blocks.0.attn.v"
    assert all(_token(model, " mary") not in example.tokens for example in _examples(model))
    _plant_channel(model, _token(model, " mary"), harm_only[1], harm_only[0], 3.0)
    _plant_channel(model, _token(model, " the"), shared[1], shared[0], 3.0)
    harm = importance_scores(model, HARM_ONLY, method=method, progress=False)
    benign = importance_scores(model, PAIRS, method=method, progress=False)

    for key in ("blocks.0.attn.q", "blocks.0.attn.k", v):
        assert (benign[key][:, harm_only[1]] == 0).all(), f"{key}: benign data reached the harm-only channel"
    assert harm[v][harm_only] > 0
    mask = set_difference(harm, benign, p=0.05, q=0.02)
    assert mask[v][harm_only], f"rank {int((harm[v] > harm[v][harm_only]).sum())} of {harm[v].numel()} in the harm scores"
    if method != "signed_snip":  # the shared weight's sign may differ between the two sets
        assert top_k_mask(harm, 0.02)[v][shared] and top_k_mask(benign, 0.05)[v][shared]
        assert not mask[v][shared]


@pytest.mark.parametrize("scope", ["row", "matrix", "global"])
def test_top_k_mask_equals_brute_force(scope):
    scores = _random_scores(2)
    mask = top_k_mask(scores, 0.25, scope=scope)
    if scope == "matrix":
        for key, values in scores.items():
            assert set(torch.nonzero(mask[key].flatten()).flatten().tolist()) == _top_set(values, 0.25)
    elif scope == "row":
        for key, values in scores.items():
            for row in range(values.shape[0]):
                assert set(torch.nonzero(mask[key][row]).flatten().tolist()) == _top_set(values[row], 0.25), (key, row)
    else:
        everything = [(value, key, index) for key, values in scores.items() for index, value in enumerate(values.flatten().tolist())]
        chosen = sorted(everything, reverse=True)[: int(0.25 * len(everything))]
        expected = {(key, index) for _, key, index in chosen}
        found = {(key, index) for key in scores for index in torch.nonzero(mask[key].flatten()).flatten().tolist()}
        assert found == expected


def test_random_mask_keeps_per_matrix_counts_and_overlap_matches_brute_force(tmp_path):
    mask = set_difference(_random_scores(3), _random_scores(4), p=0.2, q=0.4)
    control = random_mask(mask, seed=0)
    assert control.counts() == mask.counts()
    assert random_mask(mask, seed=0).counts() == control.counts()
    assert all(torch.equal(random_mask(mask, seed=0)[k], control[k]) for k in mask.keys)
    assert any(not torch.equal(random_mask(mask, seed=1)[k], control[k]) for k in mask.keys)
    overlap = mask.overlap(control)
    both = sum(len(set(torch.nonzero(mask[k].flatten()).flatten().tolist()) & set(torch.nonzero(control[k].flatten()).flatten().tolist())) for k in mask.keys)
    assert overlap.n_both == both
    assert overlap.chance_n_both == pytest.approx(sum(mask.counts()[k] ** 2 / mask[k].numel() for k in mask.keys))
    assert mask.overlap(mask).n_both == mask.n_pruned and mask.overlap(mask).jaccard == 1.0
    loaded = PruningMask.load(mask.save(tmp_path / "mask.safetensors"))
    assert loaded.description == mask.description and all(torch.equal(loaded[k], mask[k]) for k in mask.keys)
    assert loaded.fraction == pytest.approx(mask.n_pruned / sum(t.numel() for t in mask.masks.values()))


def test_random_masks_overlap_at_chance():
    """The chance level is what random masks actually give (averaged over seeds)."""
    shapes = {"a": (64, 64), "b": (32, 128)}
    reference = PruningMask({k: torch.rand(s, generator=torch.Generator().manual_seed(9)) < 0.1 for k, s in shapes.items()})
    overlaps = [random_mask(reference, seed).overlap(random_mask(reference, seed + 100)) for seed in range(20)]
    mean = sum(o.n_both for o in overlaps) / len(overlaps)
    assert mean == pytest.approx(overlaps[0].chance_n_both, rel=0.1)


# ---- restoration --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_restoration_is_bit_exact_also_after_an_exception(arch, fresh):
    model = fresh(arch)
    harm = importance_scores(model, PAIRS[:2], method="snip", progress=False)
    benign = importance_scores(model, PAIRS[2:], method="snip", progress=False)
    mask = set_difference(harm, benign, p=0.1, q=0.2)
    assert mask.n_pruned > 0
    original = _all_bytes(model)
    tokens = model.to_tokens("how do i bake bread ?")
    reference = model(tokens)
    table = {w.key: w for w in decoder_weights(model)}
    with pruned(model, mask):
        assert all((table[k].weight[mask[k]] == 0).all() for k in mask.keys)
        assert not torch.equal(model(tokens), reference)
    assert _all_bytes(model) == original
    assert torch.equal(model(tokens), reference)

    with pytest.raises(RuntimeError, match="inside the block"):
        with pruned(model, mask):
            raise RuntimeError("inside the block")
    assert _all_bytes(model) == original

    handle = prune(model, mask)  # an explicit call keeps the weights pruned ...
    assert all((table[k].weight[mask[k]] == 0).all() for k in mask.keys)
    assert not torch.equal(model(tokens), reference)
    handle.restore()  # ... until restored
    assert _all_bytes(model) == original


def test_negative_zero_and_nested_prunes_restore_bit_exactly(fresh):
    model = fresh("llama")
    weight = decoder_weights(model)[0]
    with torch.no_grad():
        weight.weight[0, 0] = -0.0
    original = _all_bytes(model)
    masks = [PruningMask({w.key: torch.rand(w.shape, generator=torch.Generator().manual_seed(s)) < 0.3 for w in decoder_weights(model)}) for s in (0, 1)]
    with pruned(model, masks[0]):
        with pruned(model, masks[1]):
            pass
    assert _all_bytes(model) == original


# ---- bad input ----------------------------------------------------------------------------------


def test_dataset_without_responses_is_a_clear_error(load_tiny):
    model = load_tiny("llama")
    with pytest.raises(InterpError, match=r"example 1 has no response .*'response' field"):
        importance_scores(model, [PAIRS[0], {"text": "how do i bake bread ?"}], progress=False)
    with pytest.raises(InterpError, match="has no prompt"):
        importance_scores(model, [{"response": "x"}], progress=False)
    with pytest.raises(InterpError, match="dataset is empty"):
        importance_scores(model, [], progress=False)
    with pytest.raises(InterpError, match="unknown scoring method 'grad'"):
        importance_scores(model, PAIRS, method="grad", progress=False)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, 5, float("nan")])
def test_fractions_outside_zero_one_are_a_clear_error(bad):
    scores = _random_scores(0)
    with pytest.raises(InterpError, match=r"p must be a fraction in \(0, 1\]"):
        set_difference(scores, scores, p=bad, q=0.1)
    with pytest.raises(InterpError, match=r"q must be a fraction in \(0, 1\]"):
        set_difference(scores, scores, p=0.1, q=bad)
    with pytest.raises(InterpError, match=r"fraction must be a fraction in \(0, 1\]"):
        top_k_mask(scores, bad)


def test_percentages_get_a_hint():
    scores = _random_scores(0)
    with pytest.raises(InterpError, match="Did you mean a percentage"):
        set_difference(scores, scores, p=1, q=5)


def test_model_without_decoder_linear_layers_is_a_clear_error():
    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)

    class NormBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.LayerNorm(4), nn.LayerNorm(4)])

    with pytest.raises(InterpError, match="has no decoder blocks .*interp.load_model"):
        decoder_weights(NoBlocks())
    with pytest.raises(InterpError, match="2 decoder blocks but no linear layers"):
        decoder_weights(NormBlocks())


def test_mask_for_another_model_is_a_clear_error(load_tiny):
    mask = PruningMask({"blocks.0.attn.q": torch.zeros(3, 3, dtype=torch.bool)})
    with pytest.raises(InterpError, match="different model size"):
        prune(load_tiny("llama"), mask)
    with pytest.raises(InterpError, match="does not have"):
        prune(load_tiny("llama"), PruningMask({"blocks.9.attn.q": torch.zeros(3, 3, dtype=torch.bool)}))
    with pytest.raises(InterpError, match="cover different weights"):
        set_difference({"a": torch.ones(2, 2)}, {"b": torch.ones(2, 2)}, p=0.5, q=0.5)


# ---- evaluation --------------------------------------------------------------------------------


def test_keyword_rule_is_the_reference_rule():
    long_tail = " word" * 25
    assert keyword_compliance("Sure, here is how to do it:" + long_tail)
    assert not keyword_compliance("Sure, here is how.")  # under 20 words
    assert not keyword_compliance("Here you go." + long_tail + " However, be careful.")
    assert not keyword_compliance("I cannot help." + long_tail)
    assert keyword_compliance("i am sorry , i can not help ." + long_tail)  # the reference is case-sensitive
    assert not keyword_compliance("i am sorry , i can not help ." + long_tail, case_sensitive=False)


def test_generation_batches_equal_prompts_alone_and_loss_is_the_response_loss(load_tiny):
    model = load_tiny("gpt2")  # absolute positions: left padding must not shift them
    prompts = ["the quick brown fox", "how do i bake bread ? mix", "a"]
    together = generate_responses(model, prompts, max_new_tokens=6, batch_size=3)
    alone = [generate_responses(model, [prompt], max_new_tokens=6)[0] for prompt in prompts]
    assert together == alone
    greedy = model.to_tokens(prompts[0])[0]
    for _ in range(6):
        greedy = torch.cat([greedy, model(greedy[None])[0, -1].argmax()[None]])
    assert alone[0] == model.tokenizer.decode(greedy[len(model.to_tokens(prompts[0])[0]) :], skip_special_tokens=True).strip()

    loss = response_loss(model, PAIRS, batch_size=3)
    total, count = 0.0, 0
    for example in _examples(model):
        logits = model(example.tokens[None])[0]
        start = example.prompt_length
        total += F.cross_entropy(logits[start - 1 : -1], example.tokens[start:], reduction="sum").item()
        count += example.n_response
    assert loss.n_tokens == count and loss.loss == pytest.approx(total / count, rel=1e-5)
    assert loss.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)


def test_evaluator_metrics_follow_the_judges(load_tiny):
    model = load_tiny("llama")
    harmful = [{"text": "how do i pick a lock ?", "category": "a"}, {"text": "the quick", "category": "b"}]
    responses = generate_responses(model, harmful, max_new_tokens=5)
    evaluator = PruningEvaluator(
        harmful=tuple(harmful),
        judge=lambda record, response: record["category"] == "a",
        benign_pairs=tuple(PAIRS),
        tasks=({"text": "1 2 3", "answer": 4}, {"text": "the answer is", "answer": -1}),
        max_new_tokens=5,
        task_max_new_tokens=5,
        group_field="category",
    )
    evaluation = evaluator(model)
    assert evaluation.metrics["harm_judge_rate"] == 0.5
    assert evaluation.metrics["harm_judge_rate[a]"] == 1.0 and evaluation.metrics["harm_judge_rate[b]"] == 0.0
    assert evaluation.metrics["harm_keyword_rate"] == sum(keyword_compliance(r) for r in responses) / 2
    assert evaluation.metrics["benign_loss"] == pytest.approx(response_loss(model, PAIRS).loss, rel=1e-5)
    assert 0.0 <= evaluation.metrics["task_accuracy"] <= 1.0
    assert evaluation.samples["harmful"][0] == (harmful[0]["text"], responses[0])
    with pytest.raises(InterpError, match="no 'answer' field"):
        PruningEvaluator(tasks=({"text": "1 2"},))
    with pytest.raises(InterpError, match="nothing to measure"):
        PruningEvaluator()


# ---- result -------------------------------------------------------------------------------------


def _result() -> PruningResult:
    sizes = {"blocks.0.attn.q": 100, "blocks.0.mlp.out": 300, "blocks.1.attn.q": 100}
    points = (
        PruningPoint("baseline", "baseline", 0.0, 0, {"harm_judge_rate": 0.9, "task_accuracy": 0.8}),
        PruningPoint("set_difference_p0.01_q0.01", "set_difference", 0.01, 5, {"harm_judge_rate": 0.3, "task_accuracy": 0.78}, p=0.01, q=0.01, category="all"),
        PruningPoint("set_difference_p0.01_q0.02", "set_difference", 0.02, 10, {"harm_judge_rate": 0.1, "task_accuracy": 0.7}, p=0.01, q=0.02, category="all"),
        PruningPoint("random_p0.01_q0.01_seed0", "random", 0.01, 5, {"harm_judge_rate": 0.88, "task_accuracy": 0.8}, p=0.01, q=0.01, seed=0, category="all"),
    )
    counts = {"set_difference_p0.01_q0.02": {"blocks.0.attn.q": 1, "blocks.0.mlp.out": 6, "blocks.1.attn.q": 3}}
    from interp.pruning.masks import MaskOverlap

    overlaps = (OverlapEntry("weapons", "cyber", MaskOverlap(n_a=10, n_b=12, n_both=6, n_total=500, chance_n_both=0.3)),)
    return PruningResult(points, sizes, counts, overlaps, method="signed_snip")


def test_result_figures_save_and_load(tmp_path):
    result = _result()
    figure = result.figure()
    traces = {(trace.name, trace.xaxis): trace for trace in figure.data}
    harm = traces[("set difference", "x")]
    assert list(harm.x) == [0.0, 1.0, 2.0] and list(harm.y) == pytest.approx([90.0, 30.0, 10.0])
    assert list(traces[("set difference", "x2")].y) == pytest.approx([80.0, 78.0, 70.0])
    assert list(traces[("random", "x")].y) == pytest.approx([90.0, 88.0])
    distribution = result.distribution_figure()
    assert list(distribution.data[0].x) == ["attn.q", "mlp.out"]
    assert distribution.data[0].z[0][1] == pytest.approx(2.0) and distribution.data[0].z[1][0] == pytest.approx(3.0)
    overlap = result.overlap_figure()
    assert list(overlap.data[0].y) == pytest.approx([6 / 16]) and list(overlap.data[1].y) == pytest.approx([0.3 / 21.7])
    assert list(overlap.data[0].x) == ["weapons & cyber (set difference)"]
    assert result.change("set_difference_p0.01_q0.02", "harm_judge_rate") == pytest.approx(-0.8)

    result.save(tmp_path / "r")
    for name in ("result.json", "points.csv", "overlaps.csv", "harm_utility.html", "distribution.html", "overlap.html"):
        assert (tmp_path / "r" / name).exists(), name
    loaded = PruningResult.load(tmp_path / "r")
    assert loaded.to_dict() == result.to_dict()
    assert loaded.overlaps[0].overlap.enrichment == pytest.approx(20.0)
    rows = (tmp_path / "r" / "points.csv").read_text().splitlines()
    assert rows[0].startswith("label,kind,p,q,seed,category,fraction,n_pruned,harm_judge_rate,task_accuracy") and len(rows) == 5


def test_result_validates_itself():
    result = _result()
    with pytest.raises(InterpError, match="labels must be unique"):
        PruningResult(result.points + (result.points[0],), result.weight_sizes)
    with pytest.raises(InterpError, match=r"outside \[0, 100\]"):
        PruningResult(result.points, result.weight_sizes, {"baseline": {"blocks.0.attn.q": 101}})
    with pytest.raises(InterpError, match="not a point label"):
        PruningResult(result.points, result.weight_sizes, {"nope": {}})
    with pytest.raises(InterpError, match="unknown kind"):
        PruningPoint("x", "magic", 0.0, 0, {})


def test_shapes_in_signatures_hold_at_runtime(load_tiny):
    """jaxtyping + beartype check the annotated shapes of the batch loss and score flattening."""
    jaxtyping = pytest.importorskip("jaxtyping")
    beartype = pytest.importorskip("beartype")
    from interp.pruning.pairs import iter_response_batches, response_nll
    from interp.pruning.scores import flatten_scores

    model = load_tiny("llama")
    batch = next(iter_response_batches(model, _examples(model), batch_size=3))
    checked = jaxtyping.jaxtyped(typechecker=beartype.beartype)(response_nll)
    summed, counts = checked(model(batch.tokens, attention_mask=batch.attention_mask), batch)
    assert summed.shape == counts.shape == (3,)
    with pytest.raises(Exception, match="vocab|batch|pos|shape|Float"):
        checked(torch.zeros(3, 5), batch)
    flat = jaxtyping.jaxtyped(typechecker=beartype.beartype)(flatten_scores)(_random_scores(0), ["blocks.0.attn.q", "blocks.0.mlp.in"])
    assert flat.shape == (8 * 8 + 24 * 8,)


def test_frozen_weights_are_scored_and_left_frozen(fresh):
    model = fresh("llama")
    expected = importance_scores(model, PAIRS, method="snip", progress=False)
    model.requires_grad_(False)
    found = importance_scores(model, PAIRS, method="snip", progress=False)
    assert not any(parameter.requires_grad for parameter in model.parameters())
    assert all(parameter.grad is None for parameter in model.parameters())
    _assert_close(dict(found.scores), dict(expected.scores), "frozen model")


def test_docstring_examples_run():
    import doctest
    import importlib

    attempted = 0
    for name in ("interp.pruning", "interp.pruning.pairs", "interp.pruning.scores", "interp.pruning.masks", "interp.pruning.apply",
                 "interp.pruning.evaluate", "interp.pruning.result", "interp.pruning.weights", "interp.experiments", "interp.experiments.base",
                 "interp.experiments.table", "interp.experiments.pruning", "interp.experiments.registry"):
        failures, tried = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert failures == 0, f"{name}: {failures} docstring example(s) failed"
        attempted += tried
    assert attempted >= 7, f"only {attempted} docstring examples ran; were they all marked +SKIP?"
