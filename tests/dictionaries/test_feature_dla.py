"""Feature direct logit attribution: at the last residual, features + decoder bias + error + the readout's biases are
the logit difference the model computes; for a transcoder of an MLP they add up to that MLP's component value in
direct_logit_attribution (computed independently)."""

import pytest
import torch

from interp.dictionaries import FeatureLogitAttribution, SparseDictionary, feature_logit_attribution
from interp.errors import InterpError
from interp.mechanisms.dla import direct_logit_attribution

PROMPTS = ["the cat sat on the mat", "a cat sat on the mat"]  # one token length


def _autoencoder(d: int, site: str) -> SparseDictionary:
    generator = torch.Generator().manual_seed(0)
    return SparseDictionary(W_enc=torch.randn(d, 40, generator=generator), b_enc=torch.zeros(40),
                            W_dec=torch.randn(40, d, generator=generator) / 4,
                            b_dec=torch.randn(d, generator=generator), activation="topk", k=6, site=site)  # fmt: skip


def _transcoder(d: int, layer: int) -> SparseDictionary:
    """Outputs about as large as the MLP's (so the rows do not cancel far beyond float32's precision)."""
    generator = torch.Generator().manual_seed(1)
    return SparseDictionary(W_enc=torch.randn(d, 30, generator=generator), b_enc=torch.zeros(30),
                            W_dec=torch.randn(30, d, generator=generator) / 200,
                            b_dec=torch.randn(d, generator=generator) / 100,
                            W_skip=torch.randn(d, d, generator=generator) / 100, activation="relu",
                            apply_b_dec_to_input=False, site=f"blocks.{layer}.ln2.hook_normalized",
                            output_site=f"blocks.{layer}.hook_mlp_out")  # fmt: skip


@pytest.mark.parametrize("arch", ["gpt2", "llama"])  # LayerNorm (centred, with a bias) and RMSNorm
def test_at_the_last_residual_the_rows_add_up_to_the_models_logit_difference(load_tiny, tmp_path, arch):
    model = load_tiny(arch)
    site = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    dictionary = _autoencoder(model.cfg.d_model, site)
    result = feature_logit_attribution(model, dictionary, PROMPTS, answer=" the", wrong=" a", positions=[-1, 2])
    logits = model(model.to_tokens(PROMPTS)).float()
    ids = model.tokenizer.encode(" the", add_special_tokens=False) + model.tokenizer.encode(
        " a", add_special_tokens=False
    )
    expected = logits[:, [-1, 2], ids[0]] - logits[:, [-1, 2], ids[1]]
    total = result.values.sum(-1) + result.decoder_bias + result.error + result.readout_bias
    assert torch.allclose(result.logit_diff, expected, atol=1e-4)
    assert torch.allclose(total, expected, atol=1e-4), (total, expected)
    assert result.skip is None and (result.values != 0).sum(-1).max() <= 6  # the active features only (TopK 6)
    assert result.values.abs().max() > 1e-2 and result.decoder_bias.abs().max() > 1e-3  # each row carries something
    loaded = FeatureLogitAttribution.load(result.save(tmp_path / arch))
    assert loaded.top(3) == result.top(3) and loaded.answer_tokens == (" the", " the")
    result.figure()


def test_a_transcoders_rows_add_up_to_its_mlps_direct_effect(load_tiny):
    model = load_tiny("llama")
    dictionary = _transcoder(model.cfg.d_model, layer=0)
    result = feature_logit_attribution(model, dictionary, PROMPTS, answer=" the", wrong=" a")
    oracle = direct_logit_attribution(model, PROMPTS, answer=" the", wrong=" a")
    mlp = oracle.component_values[:, :, oracle.components.index("L0 mlp")]
    assert result.skip is not None and result.skip.abs().max() > 1e-4
    assert torch.allclose(result.site_total, mlp, rtol=1e-4, atol=1e-6), (result.site_total - mlp, mlp)
    assert torch.allclose(result.logit_diff, oracle.logit_diff, atol=1e-4)
    best, value = result.top(1)[0]
    assert value == pytest.approx(float(result.values[:, 0, best].mean()))
    assert abs(value) == pytest.approx(float(result.values[:, 0].mean(0).abs().max()))


def test_bad_input_is_one_line(load_tiny):
    model = load_tiny("llama")
    d = model.cfg.d_model
    with pytest.raises(InterpError, match="not on the residual path"):
        feature_logit_attribution(model, _autoencoder(d, "blocks.0.ln2.hook_normalized"), PROMPTS, answer=" the")
    with pytest.raises(InterpError, match="different lengths"):
        feature_logit_attribution(
            model, _autoencoder(d, "blocks.1.hook_resid_post"), ["a cat", "the quick fox"], " the"
        )
    other = _autoencoder(d, "blocks.1.hook_resid_post").with_provenance(model_id="another", weights_hash="0" * 64)
    with pytest.raises(InterpError, match="this dictionary was trained on another"):
        feature_logit_attribution(model, other, PROMPTS, answer=" the")
