"""Attention patterns: equal to Hugging Face's eager attention weights, causal rows that sum to one,
store == model, save/load, figure hover text, errors."""

import pytest
import torch

from conftest import PROMPTS
from interp.errors import InterpError
from interp.mechanisms.attention import AttentionPattern, attention_pattern
from interp.store import cache_activations

PATTERN_TOL = 1e-5  # against transformers' own eager attention weights (measured <= 3e-8)
PROMPT = "when mary and john went to the store"


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "gemma", "gemma2"])
def test_pattern_equals_the_eager_attention_weights(arch, load_tiny, tiny_model_dirs):
    import transformers

    model = load_tiny(arch)
    layer, head = 1, 2
    result = attention_pattern(model, PROMPT, layer, head)
    reference_model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dirs[arch], attn_implementation="eager")
    with torch.no_grad():
        reference = reference_model(model.to_tokens(PROMPT), output_attentions=True).attentions[layer][0, head]
    gap = float((reference - result.pattern).abs().max())
    assert gap <= PATTERN_TOL, f"{arch}: L{layer}H{head} differs from the eager attention weights by {gap:.2e}"
    n = len(result.tokens)
    assert result.tokens == tuple(model.to_str_tokens(PROMPT))
    assert torch.allclose(result.pattern.sum(-1), torch.ones(n), atol=1e-5)
    assert float(result.pattern.triu(1).abs().max()) == 0.0, "a causal head attends to no later token"


def test_strongest_figure_and_round_trip(load_tiny, tmp_path):
    model = load_tiny("llama")
    result = attention_pattern(model, PROMPT, 0, 1)
    strongest = result.strongest(query=-1, k=3)
    assert [pos for pos, _, _ in strongest] == result.pattern[-1].argsort(descending=True)[:3].tolist()
    assert strongest[0][1] == result.tokens[strongest[0][0]]
    trace = result.figure().data[0]
    assert tuple(trace.x) == tuple(f"{i}: {token!r}" for i, token in enumerate(result.tokens))
    q, k = 3, 1
    assert trace.text[q][k] == f"query {q} {result.tokens[q]!r} -> key {k} {result.tokens[k]!r}: {float(result.pattern[q, k]):.3g}"
    assert "L0H1" in result.figure().layout.title.text
    result.save(tmp_path / "p")
    assert {p.name for p in (tmp_path / "p").iterdir()} >= {"pattern.json", "pattern.safetensors", "pattern.html"}
    loaded = AttentionPattern.load(tmp_path / "p")
    assert torch.equal(loaded.pattern, result.pattern) and loaded.tokens == result.tokens and (loaded.layer, loaded.head) == (0, 1)
    assert loaded.provenance.weights_hash == result.provenance.weights_hash


def test_store_pattern_equals_model_pattern(load_tiny, tmp_path):
    model = load_tiny("qwen2")
    store = cache_activations(model, PROMPTS, hooks=["blocks.1.attn.hook_pattern"], positions="all", out=tmp_path / "s", progress=False)
    for index in (0, 2):
        from_store = attention_pattern(store, index, 1, 3)
        from_model = attention_pattern(model, PROMPTS[index], 1, 3)
        assert from_store.tokens == from_model.tokens
        assert float((from_store.pattern - from_model.pattern).abs().max()) <= PATTERN_TOL
    with pytest.raises(InterpError, match="holds no blocks.0.attn.hook_pattern at every position"):
        attention_pattern(store, 0, 0, 0)
    with pytest.raises(InterpError, match="the prompt is its index"):
        attention_pattern(store, PROMPTS[0], 1, 0)


def test_errors_name_the_fix(load_tiny):
    model = load_tiny("gpt2")
    with pytest.raises(InterpError, match=r"layer 5 does not exist; the model has layers 0..1"):
        attention_pattern(model, PROMPT, 5, 0)
    with pytest.raises(InterpError, match=r"head 4 does not exist; layer 0 has heads 0..3"):
        attention_pattern(model, PROMPT, 0, 4)
    with pytest.raises(InterpError, match="takes the prompt's text"):
        attention_pattern(model, 0, 0, 0)
    result = attention_pattern(model, PROMPT, 0, 0)
    with pytest.raises(InterpError, match="expected"):
        AttentionPattern(**{**result.__dict__, "pattern": result.pattern[:-1]})
