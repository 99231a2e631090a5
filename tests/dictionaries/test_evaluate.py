"""Evaluating a dictionary against known answers: a perfect dictionary costs nothing, an empty one costs what
zero-ablation does, and every per-feature number equals its direct computation."""

import pytest
import torch

from interp.dictionaries import SparseDictionary
from interp.dictionaries.dashboard import write_dashboard
from interp.dictionaries.evaluate import DictionaryEval, evaluate_dictionary
from interp.errors import InterpError

from conftest import PROMPTS

SITE = "blocks.1.hook_resid_post"


def _perfect(d: int, site: str = SITE, **provenance) -> SparseDictionary:
    """ReLU codes of x and -x, decoded back: reconstructs every input exactly."""
    eye = torch.eye(d)
    return SparseDictionary(W_enc=torch.cat([eye, -eye], 1), b_enc=torch.zeros(2 * d), W_dec=torch.cat([eye, -eye], 0),
                            b_dec=torch.zeros(d), activation="relu", site=site, **provenance)  # fmt: skip


def _random(d: int, d_sae: int = 32, seed: int = 0, site: str = SITE, **fields) -> SparseDictionary:
    generator = torch.Generator().manual_seed(seed)
    return SparseDictionary(W_enc=torch.randn(d, d_sae, generator=generator), b_enc=torch.zeros(d_sae),
                            W_dec=torch.randn(d_sae, d, generator=generator), b_dec=torch.zeros(d), activation="topk",
                            k=4, site=site, **fields)  # fmt: skip


def test_a_perfect_dictionary_costs_nothing(load_tiny):
    model = load_tiny("llama")
    evaluation = evaluate_dictionary(_perfect(model.cfg.d_model), model, PROMPTS, progress=False)
    assert evaluation.fvu < 1e-10 and evaluation.kl_spliced < 1e-8
    assert evaluation.ce_spliced == pytest.approx(evaluation.ce_clean, abs=1e-5)
    assert evaluation.ce_loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert evaluation.ce_zero_ablated > evaluation.ce_clean  # zero-ablating a residual stream hurts


def test_an_empty_dictionary_costs_what_zero_ablation_does(load_tiny):
    model = load_tiny("llama")
    d = model.cfg.d_model
    empty = SparseDictionary(W_enc=torch.randn(d, 16), b_enc=torch.zeros(16), W_dec=torch.zeros(16, d), b_dec=torch.zeros(d),
                             activation="topk", k=2, site=SITE)  # fmt: skip
    evaluation = evaluate_dictionary(empty, model, PROMPTS, progress=False)
    assert evaluation.ce_spliced == pytest.approx(evaluation.ce_zero_ablated, abs=1e-5)
    assert evaluation.ce_loss_recovered == pytest.approx(0.0, abs=1e-4)


def test_an_empty_transcoder_costs_what_zero_ablating_the_mlp_does(load_tiny):
    model = load_tiny("llama")
    d = model.cfg.d_model
    empty = SparseDictionary(W_enc=torch.randn(d, 16), b_enc=torch.zeros(16), W_dec=torch.zeros(16, d), b_dec=torch.zeros(d),
                             activation="topk", k=2, apply_b_dec_to_input=False, site="blocks.1.ln2.hook_normalized",
                             output_site="blocks.1.hook_mlp_out")  # fmt: skip
    evaluation = evaluate_dictionary(empty, model, PROMPTS, progress=False)
    assert evaluation.output_site == "blocks.1.hook_mlp_out"
    assert evaluation.ce_spliced == pytest.approx(evaluation.ce_zero_ablated, abs=1e-5)
    assert evaluation.ce_zero_ablated != pytest.approx(evaluation.ce_clean, abs=1e-4)  # the MLP matters


def test_every_number_equals_its_direct_computation(load_tiny, tmp_path):
    from interp.data import PromptSet
    from interp.store import cache_activations
    from interp.store.readout import Readout

    model = load_tiny("llama")
    dictionary = _random(model.cfg.d_model)
    evaluation = evaluate_dictionary(dictionary, model, PROMPTS, n_top=3, n_logits=5, progress=False)
    store = cache_activations(model, PromptSet.from_texts(PROMPTS), hooks=[SITE], positions="all", out=tmp_path / "s", progress=False)
    acts = store[SITE]
    rows = torch.cat([acts[p, 1 : int(store.lengths[p])] for p in range(store.n_prompts)]).float()
    codes = dictionary.encode(rows)
    assert evaluation.n_tokens == len(rows)
    fvu = ((rows - dictionary(rows)) ** 2).sum() / ((rows - rows.mean(0)) ** 2).sum()
    assert evaluation.fvu == pytest.approx(float(fvu), rel=1e-4)
    assert evaluation.l0 == pytest.approx(float((codes > 0).sum(-1).float().mean()), rel=1e-6)
    assert torch.allclose(evaluation.frequency, (codes > 0).float().mean(0))
    assert torch.allclose(evaluation.max_activation, codes.max(0).values.clamp_min(0), atol=1e-5)
    feature = int(evaluation.frequency.argmax())
    value, before, token, _ = evaluation.contexts(feature)[0]
    assert value == pytest.approx(float(codes[:, feature].max()), abs=1e-5)
    logits = dictionary.W_dec @ Readout.from_model(model).W_U.float()
    assert torch.equal(evaluation.promoted_ids[feature].sort().values, logits[feature].topk(5).indices.sort().values)
    assert torch.equal(evaluation.suppressed_ids[feature].sort().values, (-logits[feature]).topk(5).indices.sort().values)
    loaded = DictionaryEval.load(evaluation.save(tmp_path / "evaluation"))
    assert loaded.summary() == evaluation.summary() and loaded.contexts(feature) == evaluation.contexts(feature)
    page = write_dashboard(evaluation, tmp_path / "features.html").read_text()
    assert f"id='f{feature}'" in page and "<mark>" in page and "plotly" in page.lower()


def test_a_dictionary_of_another_model_or_width_is_refused(load_tiny):
    model = load_tiny("llama")
    with pytest.raises(InterpError, match="this dictionary was trained on other .* not on"):
        evaluate_dictionary(_random(model.cfg.d_model, model_id="other", weights_hash="0" * 32), model, PROMPTS, progress=False)
    with pytest.raises(InterpError, match="reads vectors of width 7"):
        evaluate_dictionary(_random(7), model, PROMPTS, progress=False)
    with pytest.raises(InterpError, match="names no site"):
        evaluate_dictionary(_random(model.cfg.d_model, site=""), model, PROMPTS, progress=False)
