"""LocalBackend's fast path: a plain Hugging Face model sharing the bridge's tensors generates the rollouts.

The reference is the bridge itself (``LocalBackend(model, fast=False)``) and, for greedy decoding, a loop
that runs the whole sequence through the bridge at every step (no cache anywhere). Each test also
asserts which path ran, so a fast path that silently falls back fails here.
"""

import warnings

import pytest
import torch

from interp.model.plain_view import _disagreement, build_plain_view, hooked_modules
from interp.resampling import LocalBackend
from interp.testing import ARCHITECTURES

CONTEXT = "the quick brown fox jumps over the lazy dog . a cat sat on the mat and"
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def own_llama(tmp_path_factory):
    """A tiny Llama of this module's own: tests here edit its weights (and restore them)."""
    from interp.model import load_model
    from interp.testing import build_tiny_model

    return load_model(build_tiny_model("llama", tmp_path_factory.mktemp("plain_view") / "llama"), device="cpu")


def _greedy(backend: LocalBackend, n: int = 2) -> list[list[int]]:
    return backend.generate_tokens(CONTEXT, n, temperature=0, top_p=1.0, max_new_tokens=NEW_TOKENS, seed=0).tolist()


def _sampled(backend: LocalBackend) -> list[str]:
    return backend.generate(CONTEXT, 4, temperature=0.8, top_p=0.95, max_new_tokens=NEW_TOKENS, seed=3)


def _full_forward_greedy(model, ids: list[int]) -> list[int]:
    """Greedy continuation by a full forward pass of the bridge per step."""
    tokens = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            tokens = torch.cat([tokens, model(tokens, return_type="logits")[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens[0, len(ids):].tolist()


def _no_backend_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    ours = [str(w.message) for w in caught if "LocalBackend" in str(w.message)]
    assert not ours, f"the fast path warned: {ours}"
    return out


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_fast_path_runs_and_equals_the_bridge(load_tiny, name):
    model = load_tiny(name)
    fast, bridge = LocalBackend(model), LocalBackend(model, fast=False)
    greedy = _no_backend_warnings(lambda: _greedy(fast))
    assert fast.last_path == "plain-view", f"{name}: generated through {fast.last_path!r}, not the plain view"
    assert greedy == _greedy(bridge) and bridge.last_path == "bridge", f"{name}: plain view and bridge differ (greedy)"
    assert greedy[0] == _full_forward_greedy(model, fast.encode(CONTEXT)), f"{name}: greedy differs from the uncached loop"
    assert _sampled(fast) == _sampled(bridge), f"{name}: plain view and bridge sample differently with one seed"


def test_a_bare_hugging_face_model_is_used_as_it_is(tiny_model_dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model_dirs["llama"]
    backend = LocalBackend(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path))
    _greedy(backend)
    assert backend.last_path == "hf"


def test_hooks_send_rollouts_through_the_bridge_and_say_so(own_llama):
    backend, bridge = LocalBackend(own_llama), LocalBackend(own_llama, fast=False)
    before = _greedy(backend)

    def push(resid, hook):
        return resid + 5.0

    with own_llama.hooks(fwd_hooks=[("blocks.0.hook_resid_post", push)]):
        with pytest.warns(UserWarning, match=r"TransformerBridge .*hooks are attached \(model\.layers\.0\.hook_out\)"):
            hooked = _greedy(backend)
        assert backend.last_path == "bridge"
        assert hooked == _greedy(bridge)
    assert hooked != before, "the hook changed nothing: this test cannot tell the paths apart"
    assert _greedy(backend) == before and backend.last_path == "plain-view", "the fast path did not come back after the hooks"


def test_weights_edited_in_place_show_in_the_view(own_llama):
    backend, bridge = LocalBackend(own_llama), LocalBackend(own_llama, fast=False)
    before = _greedy(backend)
    weight = own_llama.original_model.model.layers[1].mlp.down_proj.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(-3.0)
        edited = _greedy(backend)
        assert backend.last_path == "plain-view"
        assert edited == _greedy(bridge)
        assert edited != before, "the edit changed nothing: this test cannot tell a stale view apart"
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert _greedy(backend) == before


def test_a_replaced_parameter_rebuilds_the_view(own_llama):
    """As ``interp.directions.orthogonalize`` does: a new Parameter object in place of the old one."""
    from torch import nn

    backend, bridge = LocalBackend(own_llama), LocalBackend(own_llama, fast=False)
    before = _greedy(backend)
    view = backend._views.get(torch.tensor([backend.encode(CONTEXT)]))[0]
    module = own_llama.original_model.model.layers[0].mlp.down_proj
    original = module.weight
    try:
        module.weight = nn.Parameter(original.detach() * -3.0, requires_grad=False)
        replaced = _greedy(backend)
        assert backend.last_path == "plain-view"
        assert backend._views.get(torch.tensor([backend.encode(CONTEXT)]))[0] is not view, "the view was not rebuilt"
        assert replaced == _greedy(bridge) and replaced != before
    finally:
        module.weight = original
    assert _greedy(backend) == before


def test_a_non_zero_tensor_only_the_bridge_has_sends_rollouts_through_it(own_llama):
    backend = LocalBackend(own_llama)
    _greedy(backend)
    bias = own_llama.original_model.lm_head._original_component.bias  # the bridge's zero buffer
    assert bias is not None and not bias.any()
    try:
        with torch.no_grad():
            bias[5] = 100.0
        with pytest.warns(UserWarning, match=r"non-zero tensor the plain model lacks: lm_head\.bias"):
            out = _greedy(backend)
        assert backend.last_path == "bridge" and out[0][0] == 5
    finally:
        with torch.no_grad():
            bias.zero_()
    _greedy(backend)
    assert backend.last_path == "plain-view"


def test_the_logit_check_tells_a_different_model_apart(own_llama, tiny_model_dirs):
    from transformers import AutoModelForCausalLM

    hf = own_llama.original_model
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    view, why = build_plain_view(hf, ids)
    assert view is not None and why == ""
    assert _disagreement(hf, view, ids) == ""
    other = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"]).eval()  # the same weights, then one changed
    assert _disagreement(hf, other, ids) == ""
    with torch.no_grad():
        other.model.norm.weight.mul_(1.5)
    assert "logits differ from the bridge's" in _disagreement(hf, other, ids)


def test_only_a_users_hooks_count(own_llama):
    hf = own_llama.original_model
    own_llama(torch.tensor([[1, 2, 3]]))  # lets transformers and the bridge install their own recorders
    assert hooked_modules(hf, own_llama) == []
    handle = hf.model.layers[1]._original_component.mlp.register_forward_hook(lambda module, args, out: out)
    try:
        assert hooked_modules(hf, own_llama) == ["model.layers.1._original_component.mlp"]
    finally:
        handle.remove()


def test_the_real_model_generates_through_the_view_like_hugging_face(smollm2):
    """SmolLM2-135M-Instruct: the fast path runs, and its greedy rollouts equal plain Hugging Face generate."""
    from transformers import AutoModelForCausalLM

    from interp.model import resolve_model

    backend = LocalBackend(smollm2)
    context = "The capital of France is Paris. The capital of Germany is"
    ours = _no_backend_warnings(lambda: backend.generate_tokens(context, 2, temperature=0, top_p=1.0, max_new_tokens=8, seed=0))
    assert backend.last_path == "plain-view"
    plain = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m-instruct")[0], dtype=torch.float32).eval()
    ids = torch.tensor([backend.encode(context)])
    with torch.inference_mode():
        reference = plain.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8,
                                   pad_token_id=backend.tokenizer.pad_token_id)[0, ids.shape[1]:]
    assert ours.tolist() == [reference.tolist()] * 2


def test_generate_tokens_returns_its_declared_shape(load_tiny):
    from beartype import beartype
    from jaxtyping import jaxtyped

    backend = LocalBackend(load_tiny("llama"))
    checked = jaxtyped(typechecker=beartype)(backend.generate_tokens)
    tokens = checked(CONTEXT, 3, temperature=0.8, top_p=0.95, max_new_tokens=NEW_TOKENS, seed=0)
    assert tokens.shape == (3, NEW_TOKENS) and tokens.dtype == torch.long
    assert backend.generate(CONTEXT, 3, temperature=0.8, top_p=0.95, max_new_tokens=NEW_TOKENS, seed=0) == \
        backend._decode_continuations(backend.encode(CONTEXT)[-1], tokens)
