"""Caching residual-stream sites through a plain Hugging Face view of the bridge (``interp.store.capture.Capturer``).

The reference is the bridge itself (``fast=False``). Each test asserts which path ran, so a fast path
that silently falls back fails here, and each fallback says why.
"""

import warnings

import pytest
import torch

from conftest import PROMPTS
from interp.store import capture_activations
from interp.store import cache_activations
from interp.store.capture import Capturer
from interp.testing import ARCHITECTURES

TOLERANCE = 1e-5  # relative to the largest value: SDPA and the bridge's eager attention round differently
CASES = [(["resid_post"], "last"), (["resid_pre", "resid_post"], "all"), (["blocks.1.hook_resid_pre", "blocks.0.hook_resid_post"], [-2, -1, 0])]


def _assert_close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in want:
        scale = float(want[name].abs().max())
        error = float((got[name] - want[name]).abs().max())
        assert error <= TOLERANCE * scale, f"{name}: max |diff| {error:.2e} of {scale:.2e}"


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("hooks, positions", CASES)
def test_the_plain_view_runs_and_equals_the_bridge(load_tiny, tmp_path, arch, hooks, positions):
    model = load_tiny(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        store = cache_activations(model, PROMPTS, hooks=hooks, positions=positions, out=tmp_path / "s", batch_size=2, progress=False)
    assert store.manifest["capture"] == {"path": "plain-view", "reason": ""}
    assert store.provenance.extra["capture"]["path"] == "plain-view"
    reference = capture_activations(model, PROMPTS, hooks=hooks, positions=positions, batch_size=2, fast=False)
    _assert_close({name: store[name] for name in store.hooks}, reference)


def _capturer(model, hooks, n_batches=2, **kwargs) -> Capturer:
    from interp.sites import expand_sites

    return Capturer(model, expand_sites(hooks, model.cfg.n_layers), "last", 16, torch.float32, n_batches=n_batches, **kwargs)


def _first_batch(model):
    from interp.data import iter_batches, pad_token_id, tokenize_prompts

    return next(iter(iter_batches(tokenize_prompts(model, PROMPTS), 4, pad_token_id(model))))


@pytest.mark.parametrize(
    "hooks, n_batches, fast, reason",
    [
        (["resid_post", "attn_out"], 2, True, "blocks.0.hook_attn_out is not a residual-stream site"),
        (["resid_post"], 1, True, "one batch"),
        (["resid_post"], 2, False, "fast=False"),
    ],
)
def test_where_the_plain_view_does_not_apply_the_bridge_runs_and_says_why(load_tiny, hooks, n_batches, fast, reason):
    model = load_tiny("llama")
    capture = _capturer(model, hooks, n_batches, fast=fast)
    with torch.inference_mode():
        capture(_first_batch(model))
    assert (capture.path, capture.reason) == ("bridge", reason)


def test_hooks_send_caching_through_the_bridge_with_their_effect(load_tiny, tmp_path):
    model = load_tiny("llama")
    plain = capture_activations(model, PROMPTS, hooks=["resid_post"], batch_size=2)
    shift = lambda tensor, hook: tensor + 1.0  # noqa: E731
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", shift)]), pytest.warns(UserWarning, match="caching runs through the TransformerBridge.*hooks are attached"):
        store = cache_activations(model, PROMPTS, hooks=["resid_post"], out=tmp_path / "s", batch_size=2, progress=False)
    assert store.manifest["capture"]["path"] == "bridge"
    assert "hooks are attached" in store.manifest["capture"]["reason"]
    assert torch.allclose(store["blocks.0.hook_resid_post"], plain["blocks.0.hook_resid_post"] + 1.0, atol=1e-5)


def test_a_view_that_disagrees_on_the_check_is_not_used(load_tiny, monkeypatch):
    model = load_tiny("gpt2")
    capture = _capturer(model, ["resid_post"])
    real = Capturer._plain

    def off_by_a_little(self, batch, max_length):
        return {name: value + 1e-2 for name, value in real(self, batch, max_length).items()}

    monkeypatch.setattr(Capturer, "_plain", off_by_a_little)
    batch = _first_batch(model)
    with torch.inference_mode(), pytest.warns(UserWarning, match="differs from the bridge's"):
        got = capture(batch)
    assert capture.path == "bridge" and "blocks.0.hook_resid_post differs" in capture.reason
    _assert_close(got, capture_activations(model, PROMPTS[:4], hooks=["resid_post"], batch_size=4))


def test_the_check_sample_keeps_a_padded_prompt():
    from interp.data import pad_batch
    from interp.store.capture import CHECK_TOKENS, _check_sample

    batch = pad_batch([torch.arange(1, 31), torch.tensor([5, 6, 7]), torch.arange(1, 21)], 0)
    sample = _check_sample(batch, "last")
    assert sample.tokens.shape == (2, CHECK_TOKENS)
    assert sample.lengths.tolist() == [CHECK_TOKENS, 3]
    assert sample.attention_mask.sum(1).tolist() == [CHECK_TOKENS, 3]
    assert _check_sample(batch, [25]).tokens.shape == (2, 26)  # wide enough for an explicit position


def test_the_real_model_caches_through_the_view(smollm2, tmp_path):
    prompts = [f"{prompt} , and then" for prompt in PROMPTS]
    store = cache_activations(smollm2, prompts, hooks=["resid_post"], out=tmp_path / "s", batch_size=4, progress=False)
    assert store.manifest["capture"] == {"path": "plain-view", "reason": ""}
    reference = capture_activations(smollm2, prompts, hooks=["resid_post"], batch_size=4, fast=False)
    _assert_close({name: store[name] for name in store.hooks}, reference)
