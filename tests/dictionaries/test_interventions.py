"""Features on a live model: each intervention equals the edit written out by hand, and a no-op edit changes nothing."""

import pytest
import torch

from interp.dictionaries import SparseDictionary, ablated_features, spliced, steered
from interp.errors import InterpError

from conftest import PROMPTS

SITE = "blocks.1.hook_resid_post"


def _dictionary(d: int, d_sae: int = 24, **fields) -> SparseDictionary:
    generator = torch.Generator().manual_seed(0)
    weights = {"W_enc": torch.randn(d, d_sae, generator=generator), "b_enc": torch.zeros(d_sae),
               "W_dec": torch.randn(d_sae, d, generator=generator) / 4, "b_dec": torch.zeros(d)}  # fmt: skip
    return SparseDictionary(**{**weights, "activation": "topk", "k": 4, "site": SITE, **fields})


def _logits(model, hooks=()):
    tokens = model.to_tokens(PROMPTS[:2])
    with model.hooks(fwd_hooks=list(hooks)):
        return model(tokens).float()


def test_ablating_features_removes_exactly_their_contributions(load_tiny):
    model = load_tiny("llama")
    dictionary = _dictionary(model.cfg.d_model)
    features = [1, 5]

    def by_hand(acts, hook=None):
        codes = dictionary.encode(acts[:, 1:].float())
        out = acts.clone()
        out[:, 1:] = acts[:, 1:] - codes[..., features] @ dictionary.W_dec[features]
        return out

    with ablated_features(model, dictionary, features):
        found = _logits(model)
    assert torch.allclose(found, _logits(model, [(SITE, by_hand)]), atol=1e-5)
    assert not torch.allclose(found, _logits(model), atol=1e-3)  # the edit does something


def test_ablating_a_feature_that_never_fires_changes_nothing(load_tiny):
    model = load_tiny("llama")
    d = model.cfg.d_model
    dictionary = _dictionary(d, b_enc=torch.cat([torch.zeros(23), torch.tensor([-1e6])]))  # latent 23 never fires
    with ablated_features(model, dictionary, [23]):
        found = _logits(model)
    assert torch.equal(found, _logits(model))


def test_steering_adds_the_decoder_row_and_splicing_a_perfect_dictionary_changes_nothing(load_tiny):
    model = load_tiny("llama")
    d = model.cfg.d_model
    dictionary = _dictionary(d)

    def by_hand(acts, hook=None):
        out = acts.clone()
        out[:, 1:] += 3.0 * dictionary.W_dec[2]
        return out

    with steered(model, dictionary, 2, alpha=3.0):
        found = _logits(model)
    assert torch.allclose(found, _logits(model, [(SITE, by_hand)]), atol=1e-5)
    eye = torch.eye(d)
    perfect = SparseDictionary(W_enc=torch.cat([eye, -eye], 1), b_enc=torch.zeros(2 * d), W_dec=torch.cat([eye, -eye], 0),
                               b_dec=torch.zeros(d), activation="relu", site=SITE)  # fmt: skip
    with spliced(model, perfect):
        found = _logits(model)
    assert torch.allclose(found, _logits(model), atol=1e-5)


def test_an_empty_transcoder_spliced_in_zero_ablates_the_mlp(load_tiny):
    model = load_tiny("llama")
    d = model.cfg.d_model
    empty = SparseDictionary(W_enc=torch.randn(d, 8), b_enc=torch.zeros(8), W_dec=torch.zeros(8, d), b_dec=torch.zeros(d),
                             activation="topk", k=2, apply_b_dec_to_input=False, site="blocks.1.ln2.hook_normalized",
                             output_site="blocks.1.hook_mlp_out")  # fmt: skip

    def zero(acts, hook=None):
        out = acts.clone()
        out[:, 1:] = 0
        return out

    with spliced(model, empty):
        found = _logits(model)
    assert torch.allclose(found, _logits(model, [("blocks.1.hook_mlp_out", zero)]), atol=1e-5)


def test_interventions_act_during_generation_and_refuse_bad_features(load_tiny):
    from interp.pruning.evaluate import generate_responses

    model = load_tiny("llama")
    dictionary = _dictionary(model.cfg.d_model)
    plain = generate_responses(model, PROMPTS[:2], max_new_tokens=6)
    with steered(model, dictionary, 0, alpha=50.0):
        assert generate_responses(model, PROMPTS[:2], max_new_tokens=6) != plain
    with pytest.raises(InterpError, match="feature 24 does not exist; the dictionary has latents 0..23"):
        with ablated_features(model, dictionary, [24]):
            pass
    with pytest.raises(InterpError, match="alpha must be a finite number"):
        with steered(model, dictionary, 0, alpha=float("nan")):
            pass


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_an_edit_at_resid_mid_reaches_the_rest_of_the_model(load_tiny, arch):
    """TransformerBridge's hook_resid_mid feeds only the MLP; an autoencoder there is applied through attn_out, so the
    edited stream is what the MLP reads and what resid_post carries on (resid_post - mlp_out = the edited resid_mid)."""
    model = load_tiny(arch)
    site = "blocks.0.hook_resid_mid"
    dictionary = _dictionary(model.cfg.d_model, site=site)
    seen = {}

    def keep(name):
        def hook(acts, hook=None):
            seen[name] = acts.detach().clone()
            return acts

        return hook

    names = [site, "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"]
    clean = _logits(model, [(name, keep(name)) for name in names])
    original_mid = seen[site]
    with spliced(model, dictionary):
        edited = _logits(model, [(name, keep(name)) for name in names])
    expected = original_mid.clone()
    expected[:, 1:] = dictionary(original_mid[:, 1:].float())
    assert torch.allclose(seen[site], expected, atol=1e-4)  # the MLP reads the reconstruction
    carried = seen["blocks.0.hook_resid_post"] - seen["blocks.0.hook_mlp_out"]
    assert torch.allclose(carried, expected, atol=1e-4)  # and the stream carries it on, not the original
    assert not torch.allclose(edited, clean, atol=1e-3)
