"""Exact feature patching: all features and the error patched together are the site's own activation patch (which
interp.patching computes independently), a feature whose code is the same in both runs changes nothing, and for small
patches the exact effects are what attribution patching estimates."""

import pytest
import torch

from interp.dictionaries import FeaturePatching, SparseDictionary, feature_attribution, feature_patching
from interp.errors import InterpError
from interp.metrics import logit_diff
from interp.patching import activation_patching

SITE = "blocks.1.hook_resid_post"
CHANGED = -3  # the position whose token the corrupt prompts change


def _pair(model):
    """Two prompts of one length, and the same with their third-to-last token changed."""
    clean = model.to_tokens("the cat sat on the mat").repeat(2, 1)
    clean[1, -1] = (clean[1, -1] + 3) % int(model.cfg.d_vocab)
    corrupt = clean.clone()
    corrupt[:, CHANGED] = (corrupt[:, CHANGED] + 7) % int(model.cfg.d_vocab)
    return clean, corrupt


def _autoencoder(d: int, site: str = SITE, scale: float = 0.25) -> SparseDictionary:
    generator = torch.Generator().manual_seed(0)
    return SparseDictionary(W_enc=torch.randn(d, 40, generator=generator), b_enc=torch.zeros(40),
                            W_dec=torch.randn(40, d, generator=generator) * scale, b_dec=torch.zeros(d),
                            activation="topk", k=6, site=site)  # fmt: skip


def _transcoder(d: int) -> SparseDictionary:
    """A transcoder of layer 0's MLP with a skip connection (which its error row must carry)."""
    generator = torch.Generator().manual_seed(1)
    return SparseDictionary(W_enc=torch.randn(d, 30, generator=generator), b_enc=torch.zeros(30),
                            W_dec=torch.randn(30, d, generator=generator) / 40,
                            b_dec=torch.randn(d, generator=generator) / 10,
                            W_skip=torch.randn(d, d, generator=generator) / 80, activation="relu",
                            apply_b_dec_to_input=False, site="blocks.0.ln2.hook_normalized",
                            output_site="blocks.0.hook_mlp_out")  # fmt: skip


@pytest.mark.parametrize("site", ["resid_post", "resid_mid", "mlp_out"])  # resid_mid: written through attn_out
def test_every_feature_and_the_error_together_is_the_sites_activation_patch(load_tiny, tmp_path, site):
    model = load_tiny("llama")
    d = model.cfg.d_model
    dictionary = _transcoder(d) if site == "mlp_out" else _autoencoder(d, f"blocks.0.hook_{site}")
    metric = logit_diff(" the", " a", model.tokenizer)
    clean, corrupt = _pair(model)
    result = feature_patching(
        model, dictionary, clean, corrupt, metric, features=[0, 1, 2], batch_size=5, progress=False
    )
    patched = activation_patching(model, clean, corrupt, metric, site=site, by_position=True, progress=False)
    expected = patched.values[0].float() - patched.corrupt_metric  # layer 0: the change at each position
    assert expected.abs().max() > 1e-4  # the patch does something
    assert torch.allclose(result.together, expected, rtol=1e-3, atol=1e-6), result.together - expected
    assert (
        result.values.shape == (clean.shape[1], 3) and result.features == (0, 1, 2) and "→" in result.positions[CHANGED]
    )
    loaded = FeaturePatching.load(result.save(tmp_path / site))
    assert loaded.top(3) == result.top(3) and torch.equal(loaded.together, result.together)
    result.figure()


def test_a_feature_whose_code_is_the_same_in_both_runs_changes_nothing(load_tiny):
    model = load_tiny("llama")
    dictionary = _autoencoder(model.cfg.d_model)
    clean, corrupt = _pair(model)
    result = feature_patching(
        model, dictionary, clean, corrupt, logit_diff(" the", " a", model.tokenizer), progress=False
    )
    # before the changed token both runs are the same, so every code (active ones too) and the error are
    codes = dictionary.encode(model.run_with_cache(clean, names_filter=SITE)[1][SITE].float())
    assert codes[:, 1, list(result.features)].abs().sum() > 0  # some chosen feature is active there
    before = len(result.positions) + CHANGED
    assert torch.equal(result.values[:before], torch.zeros_like(result.values[:before]))
    assert torch.equal(result.error[:before], torch.zeros(before)) and torch.equal(
        result.together[:before], torch.zeros(before)
    )
    assert result.values[before:].abs().max() > 0


def test_small_patches_are_what_attribution_estimates(load_tiny):
    """With decoder rows 1000 times smaller each feature's patch is tiny, so the metric is linear in it: the exact
    change and the attribution estimate agree to first order."""
    model = load_tiny("gpt2")
    dictionary = _autoencoder(model.cfg.d_model, scale=1e-3)
    metric = logit_diff(" the", " a", model.tokenizer)
    clean, corrupt = _pair(model)
    result = feature_patching(model, dictionary, clean, corrupt, metric, top=8, progress=False)
    estimate = feature_attribution(model, dictionary, clean, corrupt, metric)
    assert result.attribution is not None
    assert torch.allclose(result.attribution, estimate.values[:, list(result.features)])
    large = result.attribution.abs() > 1e-2 * result.attribution.abs().max()
    assert large.sum() >= 4
    ratio = result.values[large] / result.attribution[large]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.02), ratio
    # the default features are those of largest |attribution|
    assert set(result.features) == set(estimate.values.abs().amax(0).argsort(descending=True)[:8].tolist())


def test_bad_input_is_one_line(load_tiny):
    model = load_tiny("llama")
    metric = logit_diff(" the", " a", model.tokenizer)
    clean, corrupt = _pair(model)
    dictionary = _autoencoder(model.cfg.d_model)
    with pytest.raises(InterpError, match=r"feature 40 does not exist; the dictionary has latents 0\.\.39"):
        feature_patching(model, dictionary, clean, corrupt, metric, features=[3, 40])
    with pytest.raises(InterpError, match=f"position {clean.shape[1]} does not exist"):
        feature_patching(model, dictionary, clean, corrupt, metric, features=[3], positions=[0, clean.shape[1]])
    with pytest.raises(InterpError, match="same length"):
        feature_patching(model, dictionary, clean, corrupt[:, 1:], metric, features=[3])
    other = dictionary.with_provenance(model_id="another", weights_hash="0" * 64)
    with pytest.raises(InterpError, match="this dictionary was trained on another"):
        feature_patching(model, other, clean, corrupt, metric, features=[3])
