"""Logit lens: identities against the model's logits, store == model, targets, figures, errors."""

import pytest
import torch

from conftest import PROMPTS
from interp.errors import InterpError
from interp.lens import LensResult, logit_lens
from interp.store import cache_activations

LOGIT_TOLERANCE = 1e-4


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma", "gemma2"])
def test_last_layer_lens_equals_the_model_logits(arch, load_tiny):
    model = load_tiny(arch)
    result = logit_lens(model, PROMPTS, sites=["resid_post"], positions="all", top_k=3)
    assert result.sites[-1] == f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    for index, prompt in enumerate(PROMPTS):
        logprobs = torch.log_softmax(model(prompt)[0].float(), dim=-1)
        n = len(logprobs)
        own_top = logprobs.argmax(-1)
        lens_top = result.top_ids[-1, index, :n, 0]
        assert torch.equal(lens_top, own_top), f"{arch}: top-1 differs at prompt {index}"
        target = result.target_ids[index]
        diff = (result.target_logprob[-1, index, :n] - logprobs[:, target]).abs().max().item()
        assert diff <= LOGIT_TOLERANCE, f"{arch}: last-layer lens log-prob differs from the model by {diff:.2e}"
        assert torch.all(result.kl_to_final[-1, index, :n].abs() <= LOGIT_TOLERANCE)
        assert torch.isnan(result.target_prob[0, index, n:]).all(), "positions past the prompt must be NaN"
    # default target = the model's own prediction, so the last layer is always top-1 at each prompt's end
    firsts = result.first_layer_where_top()
    assert all(first is not None and first <= len(result.sites) - 1 for first in firsts), firsts


def test_store_lens_equals_model_lens(load_tiny, tmp_path):
    model = load_tiny("qwen2")
    store = cache_activations(model, PROMPTS, hooks=["resid_pre", "resid_post"], positions="last", out=tmp_path / "s", progress=False)
    from_store = logit_lens(store, targets=" the")
    from_model = logit_lens(model, PROMPTS, targets=" the")
    assert from_store.sites == from_model.sites
    for name in ("target_prob", "target_rank", "kl_to_final", "top_probs"):
        diff = (getattr(from_store, name) - getattr(from_model, name)).abs().max().item()
        assert diff <= LOGIT_TOLERANCE, f"{name}: store and model lens differ by {diff:.2e}"
    assert from_store.position_tokens == from_model.position_tokens
    assert from_store.target_tokens == (" the",) * len(PROMPTS)


def test_rank_and_prob_agree_with_a_direct_computation(load_tiny):
    model = load_tiny("llama")
    result = logit_lens(model, PROMPTS[:2], targets=[" the", " mary"], sites=["resid_pre"])
    _, cache = model.run_with_cache(PROMPTS[1])
    from interp.store.readout import Readout

    logits = Readout.from_model(model)(cache["blocks.1.hook_resid_pre"][0, -1])
    target = model.tokenizer.encode(" mary", add_special_tokens=False)[0]
    expected_rank = int((logits > logits[target]).sum())
    assert int(result.target_rank[1, 1, 0]) == expected_rank
    assert float(result.target_prob[1, 1, 0]) == pytest.approx(float(torch.softmax(logits, -1)[target]), abs=1e-6)


def test_translator_is_applied_per_site(load_tiny):
    model = load_tiny("llama")
    seen = []

    def scale_early_layers(site, resid):
        seen.append(site)
        return resid * 0 if site == "blocks.0.hook_resid_pre" else resid

    result = logit_lens(model, PROMPTS[:3], sites=["resid_pre", "resid_post"], translator=scale_early_layers)
    assert "blocks.0.hook_resid_pre" in seen and result.translator == "scale_early_layers"
    # a zero residual decodes to the same distribution for every prompt
    first = result.top_probs[0]
    assert torch.allclose(first[0], first[1], atol=1e-6) and torch.allclose(first[1], first[2], atol=1e-6)


def test_figure_has_token_strings_and_labels(load_tiny):
    model = load_tiny("gpt2")
    result = logit_lens(model, PROMPTS[:1], positions="all", sites=["resid_pre", "resid_mid", "resid_post"])
    figure = result.figure(metric="prob")
    heatmap = figure.data[0]
    tokens = model.to_str_tokens(PROMPTS[0])
    assert list(heatmap.x) == [f"{i}: {t!r}" for i, t in enumerate(tokens)]
    assert heatmap.y[0] == "L0 resid_pre" and heatmap.y[-1] == f"L{model.cfg.n_layers - 1} resid_post"
    assert len(heatmap.y) == 3 * model.cfg.n_layers
    assert "top:" in heatmap.customdata[0][0] and "target" in heatmap.customdata[0][0]
    assert figure.layout.xaxis.title.text == "position: token" and figure.layout.yaxis.title.text
    multi = logit_lens(model, PROMPTS[:3]).figure(metric="kl")
    assert len(multi.data[0].x) == 3


def test_save_and_load_round_trip(load_tiny, tmp_path):
    result = logit_lens(load_tiny("llama"), PROMPTS[:3], positions=[0, -1])
    result.save(tmp_path / "lens")
    assert {p.name for p in (tmp_path / "lens").iterdir()} >= {"lens.json", "lens.safetensors", "lens.csv", "lens.html"}
    loaded = LensResult.load(tmp_path / "lens")
    assert loaded.sites == result.sites and loaded.top_tokens == result.top_tokens
    assert torch.equal(loaded.target_prob, result.target_prob)
    assert loaded.provenance == result.provenance


def test_lens_errors(load_tiny, tmp_path):
    model = load_tiny("llama")
    with pytest.raises(InterpError, match="target ' fox' is 2 tokens"):
        logit_lens(model, PROMPTS[:1], targets=" fox")
    with pytest.raises(InterpError, match="got 2 targets for 1 prompts"):
        logit_lens(model, PROMPTS[:1], targets=[" fox", " dog"])
    with pytest.raises(InterpError, match="needs prompts"):
        logit_lens(model)
    with pytest.raises(InterpError, match="not one"):
        logit_lens(model, PROMPTS[:1], sites=["z"])
    store = cache_activations(model, PROMPTS, hooks=["resid_pre"], out=tmp_path / "s", progress=False)
    with pytest.raises(InterpError, match="the store has no blocks.1.hook_resid_post"):
        logit_lens(store)
    with pytest.raises(InterpError, match="unknown lens metric"):
        logit_lens(model, PROMPTS[:1]).figure(metric="accuracy")


def test_cli_lens_from_store(load_tiny, tiny_model_dirs, tmp_path, capsys):
    from interp.cli import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS))
    assert main(["cache", "--model", str(tiny_model_dirs["llama"]), "--prompts", str(prompts), "--hooks", "resid_pre,resid_post", "--out", str(tmp_path / "s"), "--device", "cpu"]) == 0
    assert main(["lens", "--store", str(tmp_path / "s"), "--target", " the", "--out", str(tmp_path / "lens")]) == 0
    loaded = LensResult.load(tmp_path / "lens")
    assert loaded.target_tokens[0] == " the" and len(loaded.prompts) == len(PROMPTS)
