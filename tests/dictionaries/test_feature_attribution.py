"""Attribution patching over a dictionary's features adds up, with the error term, to the site's own attribution-patching
estimate, which interp.patching computes independently."""

import pytest
import torch

from interp.dictionaries import FeatureAttribution, SparseDictionary, feature_attribution
from interp.errors import InterpError
from interp.metrics import logit_diff
from interp.patching import attribution_patching

SITE = "blocks.1.hook_resid_post"


def _pair(model):
    """Two prompts of one length, and the same with their third-to-last token changed."""
    clean = model.to_tokens("the cat sat on the mat").repeat(2, 1)
    clean[1, -1] = (clean[1, -1] + 3) % int(model.cfg.d_vocab)  # two prompts that differ at the end
    corrupt = clean.clone()
    corrupt[:, -3] = (corrupt[:, -3] + 7) % int(model.cfg.d_vocab)
    return clean, corrupt


def _dictionary(d: int, site: str = SITE) -> SparseDictionary:
    generator = torch.Generator().manual_seed(0)
    return SparseDictionary(W_enc=torch.randn(d, 40, generator=generator), b_enc=torch.zeros(40),
                            W_dec=torch.randn(40, d, generator=generator) / 4, b_dec=torch.zeros(d), activation="topk",
                            k=6, site=site)  # fmt: skip


@pytest.mark.parametrize(("direction", "kind"), [("denoising", "resid_post"), ("noising", "resid_post"),
                                                 ("denoising", "resid_mid")])  # fmt: skip
def test_features_and_error_add_up_to_the_site_estimate(load_tiny, tmp_path, direction, kind):
    """resid_mid: the gradient is the whole stream's (taken at attn_out), as interp.patching takes it."""
    model = load_tiny("llama")
    metric = logit_diff(" the", " a", model.tokenizer)
    clean, corrupt = _pair(model)
    dictionary = _dictionary(model.cfg.d_model, f"blocks.1.hook_{kind}")
    result = feature_attribution(model, dictionary, clean, corrupt, metric, direction=direction)
    site = attribution_patching(model, clean, corrupt, metric, site=kind, by_position=True, direction=direction)
    baseline = site.corrupt_metric if direction == "denoising" else site.clean_metric
    expected = site.values[1] - baseline  # layer 1's row: the estimated change at each position
    assert torch.allclose(result.values.sum(-1) + result.error, expected.float(), atol=1e-4)
    assert result.values.abs().sum() > 0 and (result.clean_metric, result.corrupt_metric) == pytest.approx(
        (site.clean_metric, site.corrupt_metric), abs=1e-5
    )
    assert "→" in result.positions[-3] and "→" not in result.positions[-1]
    loaded = FeatureAttribution.load(result.save(tmp_path / f"{direction}_{kind}"))
    assert loaded.top(3) == result.top(3)
    result.figure()


def test_bad_input_is_one_line(load_tiny):
    model = load_tiny("llama")
    metric = logit_diff(" the", " a", model.tokenizer)
    clean, corrupt = _pair(model)
    with pytest.raises(InterpError, match="direction must be denoising or noising"):
        feature_attribution(model, _dictionary(model.cfg.d_model), clean, corrupt, metric, direction="both")
    with pytest.raises(InterpError, match="reads vectors of width 7"):
        feature_attribution(model, _dictionary(7), clean, corrupt, metric)
