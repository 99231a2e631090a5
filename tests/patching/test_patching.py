"""Activation and attribution patching: transformer_lens as the oracle, identities, finite differences,
a planted mechanism, the organism's induction head, result objects, CLI and errors."""

import csv
import doctest
import io
import json
import re
import warnings
from dataclasses import replace

import pytest
import torch
import transformer_lens.patching as tl_patching

from interp import metrics
from interp.errors import InterpError
from interp.metrics import logit_diff
from interp.patching import RESULT_FILES, PatchingResult, activation_patching, attribution_patching, attribution_patching_sites

TOLERANCE = 1e-4  # agreement with transformer_lens and with the unpatched runs
FAST_VS_PLAIN = 1e-5  # the fast path (layers, positions skipped; prefix from the KV cache) against full forwards
ARCHITECTURES = ("gpt2", "llama", "qwen2", "gemma", "gemma2", "organism")  # the tiny models and the bundled organism
SWAPPED = (2, 4)  # positions where corrupt prompts differ from clean ones


def token_pairs(model, n_prompts: int = 2, n_pos: int = 7, swapped=SWAPPED, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clean prompts (BOS first) and corrupt copies with other tokens at ``swapped``."""
    generator = torch.Generator().manual_seed(seed)
    n_words = len(model.tokenizer)
    clean = torch.randint(3, n_words, (n_prompts, n_pos), generator=generator)
    clean[:, 0] = model.tokenizer.bos_token_id
    corrupt = clean.clone()
    for pos in swapped:
        corrupt[:, pos] = (clean[:, pos] - 3 + torch.randint(1, n_words - 3, (n_prompts,), generator=generator)) % (n_words - 3) + 3
    return clean, corrupt


def make_metric(n_prompts: int = 2) -> metrics.LogitDiff:
    return logit_diff(answer=list(range(5, 5 + n_prompts)), wrong=list(range(20, 20 + n_prompts)))


def every_position_metric(logits: torch.Tensor) -> torch.Tensor:
    """A metric that reads every position (so every position's logits must be computed)."""
    return logits[:, :, 5].mean(-1) - logits[:, 1:, 20].mean(-1)


def _all_positions(act, index, source):
    act[...] = source
    return act


# (interp site, by_position) -> (transformer_lens activation name, patch setter, its axes, permutation to ours)
TL_SWEEPS = {
    ("resid_pre", True): ("resid_pre", tl_patching.layer_pos_patch_setter, ("layer", "pos"), None),
    ("resid_mid", True): ("resid_mid", tl_patching.layer_pos_patch_setter, ("layer", "pos"), None),
    ("resid_post", True): ("resid_post", tl_patching.layer_pos_patch_setter, ("layer", "pos"), None),
    ("attn_out", True): ("attn_out", tl_patching.layer_pos_patch_setter, ("layer", "pos"), None),
    ("mlp_out", True): ("mlp_out", tl_patching.layer_pos_patch_setter, ("layer", "pos"), None),
    ("resid_pre", False): ("resid_pre", _all_positions, ("layer",), None),
    ("resid_mid", False): ("resid_mid", _all_positions, ("layer",), None),
    ("attn_out", False): ("attn_out", _all_positions, ("layer",), None),
    ("attn_head_out", True): ("z", tl_patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head"), None),
    ("attn_head_value", True): ("v", tl_patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head"), None),
    ("attn_head_query", True): ("q", tl_patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head"), None),
    ("attn_head_key", True): ("k", tl_patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head"), None),
    ("attn_head_pattern", True): ("pattern", tl_patching.layer_head_pos_pattern_patch_setter, ("layer", "head_index", "dest_pos"), (0, 2, 1)),
    ("attn_head_out", False): ("z", tl_patching.layer_head_vector_patch_setter, ("layer", "head"), None),
    ("attn_head_value", False): ("v", tl_patching.layer_head_vector_patch_setter, ("layer", "head"), None),
    ("attn_head_key", False): ("k", tl_patching.layer_head_vector_patch_setter, ("layer", "head"), None),
    ("attn_head_pattern", False): ("pattern", tl_patching.layer_head_pattern_patch_setter, ("layer", "head_index"), None),
}


def transformer_lens_values(model, site: str, by_position: bool, source_tokens, target_tokens, metric) -> torch.Tensor:
    name, setter, axes, permutation = TL_SWEEPS[(site, by_position)]
    with torch.no_grad():
        _, source_cache = model.run_with_cache(source_tokens)
        if name == "resid_mid":
            # TransformerBridge's hook_resid_mid feeds only the MLP, so transformer_lens' resid_mid patching there leaves the
            # residual that bypasses the MLP alone. Patch the residual itself: attn_out := source resid_mid - target resid_pre.
            _, target_cache = model.run_with_cache(target_tokens)
            layers = range(model.cfg.n_layers)
            source_cache = {f"blocks.{l}.hook_attn_out": source_cache[f"blocks.{l}.hook_resid_mid"] - target_cache[f"blocks.{l}.hook_resid_pre"] for l in layers}
            name = "attn_out"
        values = tl_patching.generic_activation_patch(model, target_tokens, source_cache, lambda logits: metric(logits).mean(), setter, name, index_axis_names=axes)
    return (values.permute(*permutation) if permutation else values).cpu()


# --------------------------------------------------------------------------- oracle: transformer_lens


@pytest.mark.parametrize(
    "arch, direction, reads",
    [("llama", "denoising", "last"), ("llama", "noising", "every"), ("gpt2", "denoising", "last"), ("gemma", "noising", "last"), ("qwen2", "denoising", "every")],
)
def test_every_site_equals_transformer_lens_patching(arch, direction, reads, load_tiny):
    """Each site and axis layout against transformer_lens' one-forward-per-cell loop (Llama, Qwen2: grouped-query
    attention), with a metric that reads the last position (only that one is unembedded) or every position."""
    model = load_tiny(arch)
    clean, corrupt = token_pairs(model)
    metric = make_metric() if reads == "last" else every_position_metric
    source, target = (clean, corrupt) if direction == "denoising" else (corrupt, clean)
    for (site, by_position), (_, _, axes, _) in TL_SWEEPS.items():
        ours = activation_patching(model, clean, corrupt, metric, site=site, by_position=by_position, direction=direction, progress=False)
        expected = transformer_lens_values(model, site, by_position, source, target, metric)
        assert ours.values.shape == expected.shape, f"{arch} {site} by_position={by_position}: shape {tuple(ours.values.shape)} vs transformer_lens {tuple(expected.shape)}"
        difference = (ours.values - expected).abs().max().item()
        assert difference <= TOLERANCE, f"{arch} {direction} {site} by_position={by_position}: max |interp - transformer_lens| = {difference:.2e}"


def test_only_metrics_that_read_the_last_position_alone_get_last_position_logits():
    from interp.patching.engine import _reads_last_position_only

    logits = torch.randn(2, 5, 32)
    for metric in (make_metric(), metrics.probability(answer=3), metrics.kl_divergence(torch.randn(2, 32)), lambda l: l[:, -1].logsumexp(-1)):
        assert _reads_last_position_only(metric, logits, float(metric(logits).mean()))
    for metric in (every_position_metric, lambda l: l[:, 0, 3], lambda l: l.nan_to_num()[:, :, 3].sum(-1), lambda l: l[:, -2:].sum()):
        assert not _reads_last_position_only(metric, logits, float(metrics.reduce_metric(metric, logits)))


def test_chunking_and_the_plain_forward_fallback_give_the_same_values(load_tiny):
    """One cell per forward, the default chunks, and full forwards (no layer/position skipping) agree."""
    model = load_tiny("qwen2")
    clean, corrupt = token_pairs(model)
    for site, metric in (("resid_pre", make_metric()), ("attn_head_out", every_position_metric), ("attn_head_pattern", make_metric()), ("attn_head_key", every_position_metric)):
        default = activation_patching(model, clean, corrupt, metric, site=site, progress=False)
        one_cell = activation_patching(model, clean, corrupt, metric, site=site, batch_size=2, progress=False)
        plain = activation_patching(model, clean, corrupt, metric, site=site, progress=False, fast_path=False)
        assert default.fast_path and one_cell.fast_path, f"{site}: the fast path fell back: {default.fallback_reason or one_cell.fallback_reason}"
        assert plain.fast_path is False and plain.fallback_reason == "fast_path=False was passed"
        assert (default.values - one_cell.values).abs().max().item() <= TOLERANCE, site
        assert (default.values - plain.values).abs().max().item() <= TOLERANCE, site


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_fast_path_runs_and_equals_the_plain_path(arch, load_tiny, request):
    """On every supported architecture the fast path is used (no fallback) and gives the full forwards' values:
    resid_pre by position (layers and positions skipped, last position unembedded) and attn_head_out by
    position with a metric reading every position (late start: the cell's block at one position, then on)."""
    model = request.getfixturevalue("organism") if arch == "organism" else load_tiny(arch)
    clean, corrupt = token_pairs(model, swapped=(4,))  # positions 0-3 come from the KV cache
    for site, metric in (("resid_pre", make_metric()), ("attn_head_out", every_position_metric)):
        fast = activation_patching(model, clean, corrupt, metric, site=site, progress=False)
        plain = activation_patching(model, clean, corrupt, metric, site=site, progress=False, fast_path=False)
        assert fast.fast_path is True, f"{arch} {site}: the fast path fell back to full forwards: {fast.fallback_reason}"
        assert fast.fallback_reason == "" and plain.fast_path is False
        difference = (fast.values - plain.values).abs().max().item()
        assert difference <= FAST_VS_PLAIN, f"{arch} {site}: max |fast path - full forwards| = {difference:.2e} at {fast.top(1)}"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_shortcuts_run_where_they_should_and_change_no_value(arch, load_tiny, request):
    """A logit difference reads few vocabulary columns at the last position: its forwards unembed only those
    columns and run the last block's MLP at the last position only. A metric reading every position gets
    neither (only late start); the plain path none but the last-position logits. Values as the full forwards'."""
    model = request.getfixturevalue("organism") if arch == "organism" else load_tiny(arch)
    clean, corrupt = token_pairs(model, swapped=(4,))
    expected = {
        ("resid_pre", "last"): {"last_position_logits", "metric_columns", "last_block_mlp"},
        ("attn_head_out", "last"): {"last_position_logits", "metric_columns", "last_block_mlp", "late_start"},
        ("attn_head_out", "every"): {"late_start"},
    }
    for (site, reads), shortcuts in expected.items():
        metric = make_metric() if reads == "last" else every_position_metric
        fast = activation_patching(model, clean, corrupt, metric, site=site, progress=False)
        plain = activation_patching(model, clean, corrupt, metric, site=site, progress=False, fast_path=False)
        assert set(fast.shortcuts) == shortcuts, f"{arch} {site} ({reads}): shortcuts {fast.shortcuts}, expected {sorted(shortcuts)}"
        assert set(plain.shortcuts) == ({"last_position_logits"} if reads == "last" else set()), f"{arch} {site}: the plain path ran {plain.shortcuts}"
        difference = (fast.values - plain.values).abs().max().item()
        assert difference <= FAST_VS_PLAIN, f"{arch} {site} ({reads}): max |shortcuts - full forwards| = {difference:.2e} at {fast.top(1)}"
    probability = activation_patching(model, clean, corrupt, metrics.probability(answer=5), site="resid_pre", progress=False)
    assert "metric_columns" not in probability.shortcuts and "last_block_mlp" in probability.shortcuts, f"{arch}: a softmax reads every column: {probability.shortcuts}"


def test_metric_columns_are_the_columns_a_metric_reads_and_nothing_else():
    from interp.patching.engine import metric_columns

    logits = torch.randn(2, 5, 64)
    logits[:, -1, 4] = torch.tensor([1.0, 2.0])  # a positive column for the gate below
    reads = {
        "logit_diff": (make_metric(), [5, 6, 20, 21]),
        "one column": (lambda l: l[:, -1, 3], [3]),
        "normalized": (metrics.normalized(make_metric(), 1.0, 0.0), [5, 6, 20, 21]),
        "nan_to_num of one column": (lambda l: l[:, -1].nan_to_num()[:, 3], [3]),
    }
    for name, (metric, columns) in reads.items():
        got = metric_columns(metric, logits, float(metrics.reduce_metric(metric, logits)))
        assert got is not None and got.tolist() == columns, f"{name}: {got}"
    unrestricted = {
        "probability (softmax)": metrics.probability(answer=3),
        "gated by a column without gradient": lambda l: l[:, -1, 3] * (l[:, -1, 4] > 0),
        "max over the vocabulary": lambda l: l[:, -1].max(-1).values,
        "argmax (no gradient)": lambda l: (l[:, -1].argmax(-1) == 3).float(),
    }
    for name, metric in unrestricted.items():
        got = metric_columns(metric, logits, float(metrics.reduce_metric(metric, logits)))
        assert got is None, f"{name}: restricted to columns {got.tolist()}"


def _capture_without_keys(capture):
    """``_capture`` whose KV cache was not written (keys None: what transformers 5.24 did before interp.model.compat)."""

    def captured(*args, **kwargs):
        logits, acts, cache = capture(*args, **kwargs)
        for layer in cache.layers if cache is not None else ():
            layer.keys = None
        return logits, acts, cache

    return captured


def _failing_run(self, *args, **kwargs):
    raise RuntimeError("the fast forward broke")


def _fallback_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "skipping layers and positions does not work" in str(w.message)]


@pytest.mark.parametrize(
    "breakage, reason",
    [
        pytest.param("unwritten KV cache", "RuntimeError: layer 0 of the unpatched run's KV cache holds no keys/values", id="kv-cache-not-written"),
        pytest.param("fast forward raises", "RuntimeError: the fast forward broke", id="fast-forward-raises"),
    ],
)
def test_a_failing_fast_path_is_recorded_and_warned_about_once(breakage, reason, load_tiny, monkeypatch, tmp_path):
    """The result says fast_path=False and why, a warning names the reason (once per reason), and the values are the full forwards'."""
    from interp.patching import activation, engine

    model = load_tiny("llama")
    clean, corrupt = token_pairs(model)
    metric = make_metric()
    monkeypatch.setattr(engine, "_WARNED_FALLBACKS", set())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        plain = activation_patching(model, clean, corrupt, metric, progress=False, fast_path=False)
    assert not _fallback_warnings(record), "asking for full forwards is no fallback to warn about"
    if breakage == "unwritten KV cache":
        monkeypatch.setattr(activation, "_capture", _capture_without_keys(activation._capture))
    else:
        monkeypatch.setattr(engine._Engine, "_run", _failing_run)
    with pytest.warns(UserWarning, match=r"skipping layers and positions does not work on this model \(" + re.escape(reason)):
        result = activation_patching(model, clean, corrupt, metric, progress=False)
    assert result.fast_path is False and result.fallback_reason.startswith(reason), result.fallback_reason
    difference = (result.values - plain.values).abs().max().item()
    assert difference <= FAST_VS_PLAIN, f"fallback vs full forwards: {difference:.2e}"
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        activation_patching(model, clean, corrupt, metric, progress=False)
    assert not _fallback_warnings(again), f"the same reason was warned about twice: {_fallback_warnings(again)}"
    loaded = PatchingResult.load(result.save(tmp_path / "fallback"))
    assert (loaded.fast_path, loaded.fallback_reason) == (False, result.fallback_reason)


def test_skipped_blocks_are_restored_on_exit_also_after_an_error():
    """Inside ``skipping_blocks`` the first blocks return their input; after it (also when the body
    raises) every block runs its own forward again, and an instance forward it had before is kept."""
    from types import SimpleNamespace

    from interp.model.shortcuts import skipping_blocks

    blocks = [torch.nn.Linear(3, 3) for _ in range(3)]
    wrapped = blocks[1].forward  # an instance forward set before, as accelerate's add_hook_to_module does
    blocks[1].forward = lambda x: 2 * wrapped(x)
    model, x = SimpleNamespace(blocks=torch.nn.ModuleList(blocks)), torch.randn(2, 3)
    before = [block(x) for block in blocks]
    with pytest.raises(RuntimeError, match="inside"):
        with skipping_blocks(model, 2):
            assert torch.equal(blocks[0](x), x) and torch.equal(blocks[1](x), x), "skipped blocks must return their input"
            assert torch.equal(blocks[2](x), before[2]), "blocks from n_skipped on must run"
            raise RuntimeError("inside")
    assert "forward" not in vars(blocks[0]) and "forward" not in vars(blocks[2]), "no instance forward may be left behind"
    for layer, block in enumerate(blocks):
        assert torch.equal(block(x), before[layer]), f"block {layer} does not compute what it did before the with"


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma"])
def test_patching_every_position_of_a_residual_site_gives_the_other_run(arch, load_tiny):
    """Denoising the whole residual at any layer gives the clean metric (layer 0: the clean run); noising gives the corrupt one."""
    model = load_tiny(arch)
    # the last token too: the tiny GPT-2's out-projection biases add a constant to the residual that doubles its std at the
    # final norm (0.030 -> 0.063, the token-dependent part 0.025), which scales swaps at positions 2 and 4 down to a
    # metric change of 6e-4 (2e-3 with zero biases), too close to TOLERANCE to show that patching did anything
    clean, corrupt = token_pairs(model, swapped=(*SWAPPED, -1))
    metric = make_metric()
    for site in ("resid_pre", "resid_mid", "resid_post"):
        denoised = activation_patching(model, clean, corrupt, metric, site=site, by_position=False, progress=False)
        noised = activation_patching(model, clean, corrupt, metric, site=site, by_position=False, direction="noising", progress=False)
        assert abs(denoised.clean_metric - denoised.corrupt_metric) > 10 * TOLERANCE, "the pair must change the metric"
        assert (denoised.values - denoised.clean_metric).abs().max().item() <= TOLERANCE, f"{arch} {site}: denoising every position is not the clean run"
        assert (noised.values - noised.corrupt_metric).abs().max().item() <= TOLERANCE, f"{arch} {site}: noising every position is not the corrupt run"


def test_layer_zero_residual_at_the_one_swapped_position_gives_the_clean_run(load_tiny):
    model = load_tiny("llama")
    clean, corrupt = token_pairs(model, swapped=(3,))
    metric = make_metric()
    result = activation_patching(model, clean, corrupt, metric, site="resid_pre", progress=False)
    assert result.values[0, 3].item() == pytest.approx(result.clean_metric, abs=TOLERANCE)
    unchanged = [pos for pos in range(clean.shape[1]) if pos != 3]
    assert torch.all(result.values[0, unchanged] == result.corrupt_metric), "positions that do not differ cannot change anything"
    assert torch.all(result.values[:, :3] == result.corrupt_metric), "positions before the swap are the same in both runs"


# --------------------------------------------------------------------------- attribution patching


def _cell_index(site: str, by_position: bool, index: tuple[int, ...]) -> tuple:
    """The entries of one cell in the activation tensor (prompts included), given its (layer, ...) index."""
    parts = dict(zip(("pos", "head") if by_position else ("head",), index[1:]))
    pos, head = parts.get("pos", slice(None)), parts.get("head")
    if site.startswith("attn_head_pattern"):  # [prompt, head, query_pos, key_pos]
        return (slice(None), head, pos)
    if site.startswith("attn_head"):  # [prompt, pos, head, d_head]
        return (slice(None), pos, head)
    return (slice(None), pos)  # [prompt, pos, d_model]


_HOOKS = {"resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out",
          "attn_head_out": "attn.hook_z", "attn_head_value": "attn.hook_v", "attn_head_key": "attn.hook_k",
          "attn_head_query": "attn.hook_q", "attn_head_pattern": "attn.hook_pattern"}  # fmt: skip


def test_attribution_equals_the_finite_difference_of_each_cell(tiny_model_dirs):
    """values - baseline = d/d eps metric(target + eps * (source - target) in the cell) at eps = 0 (central differences, float64)."""
    from interp.model import load_model

    # GPT-2: its norms and attention run in float64 throughout (Llama's RMSNorm and rotary compute in float32)
    model = load_model(tiny_model_dirs["gpt2"], device="cpu", dtype=torch.float64)
    clean, corrupt = token_pairs(model)
    metric = make_metric()
    eps = 1e-5
    generator = torch.Generator().manual_seed(0)
    results = attribution_patching_sites(model, clean, corrupt, metric, sites=list(_HOOKS), by_position=True)
    results["attn_head_out all positions"] = attribution_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)
    with torch.no_grad():
        _, source_cache = model.run_with_cache(clean)
        _, target_cache = model.run_with_cache(corrupt)
    checked = 0
    for key, result in results.items():
        site = key.split()[0]
        effect = result.effect
        cells = (effect.abs().reshape(-1) > 0).nonzero().flatten()
        assert len(cells) > 0, f"{key}: every attribution is zero"
        for cell in cells[torch.randperm(len(cells), generator=generator)[:4]].tolist():
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(cell), tuple(effect.shape)))
            read = f"blocks.{index[0]}.{_HOOKS[site]}"
            # the residual between attention and MLP is moved through attn_out (the bridge's hook_resid_mid feeds only the MLP)
            write = read.replace("hook_resid_mid", "hook_attn_out")
            entries = _cell_index(site, "pos" in result.axes, index)
            delta = source_cache[read][entries] - target_cache[read][entries]

            def nudged(scale: float) -> float:
                def hook(act, hook):
                    act = act.clone()
                    act[entries] = act[entries] + scale * delta
                    return act

                with torch.no_grad():
                    return metric(model.run_with_hooks(corrupt, fwd_hooks=[(write, hook)])).mean().item()

            derivative = (nudged(eps) - nudged(-eps)) / (2 * eps)
            assert effect[index].item() == pytest.approx(derivative, rel=1e-5, abs=1e-8), f"{key} cell {result.cell_label(index)}"
            checked += 1
    assert checked >= 30


def test_attribution_of_several_sites_at_once_equals_one_site_at_a_time(load_tiny):
    model = load_tiny("gemma")
    clean, corrupt = token_pairs(model)
    metric = make_metric()
    together = attribution_patching_sites(model, clean, corrupt, metric, sites=["resid_pre", "attn_head_value"], direction="noising")
    for site, result in together.items():
        alone = attribution_patching(model, clean, corrupt, metric, site=site, direction="noising")
        assert result.method == "attribution" and result.direction == "noising"
        assert result.fast_path is None and result.fallback_reason == "", "attribution runs no patched forwards"
        assert torch.allclose(result.values, alone.values, atol=1e-6), site
    exact = activation_patching(model, clean, corrupt, metric, site="resid_pre", direction="noising", progress=False)
    assert together["resid_pre"].clean_metric == pytest.approx(exact.clean_metric, abs=TOLERANCE)
    assert together["resid_pre"].corrupt_metric == pytest.approx(exact.corrupt_metric, abs=TOLERANCE)


# --------------------------------------------------------------------------- a planted mechanism


def test_planted_head_is_the_only_head_that_matters(tiny_model_dirs):
    """Zero every head's output projection but L1H2's: only L1H2 moves information between positions."""
    from interp.model import load_model

    model = load_model(tiny_model_dirs["llama"], device="cpu")
    d_head = model.cfg.d_head
    with torch.no_grad():
        for layer, block in enumerate(model.original_model.model.layers):
            for head in range(model.cfg.n_heads):
                if (layer, head) != (1, 2):
                    block.self_attn.o_proj.weight[:, head * d_head : (head + 1) * d_head] = 0
    clean, corrupt = token_pairs(model)
    metric = make_metric()
    exact = activation_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False, progress=False)
    approx = attribution_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)
    for result in (exact, approx):
        assert result.top(1)[0].label == "L1H2", result.top(3)
        others = result.effect.clone()
        others[1, 2] = 0
        assert others.abs().max().item() <= 1e-5, f"{result.method}: heads without an output changed the metric: {result.top(3)}"
        assert abs(result.effect[1, 2].item()) > 1e-3
    positions = activation_patching(model, clean, corrupt, metric, site="attn_head_out", progress=False)
    top = positions.top(1)[0]
    assert top.index[0] == 1 and top.index[2] == 2 and top.label.startswith("L1H2 @ ")


# --------------------------------------------------------------------------- the organism's induction head


@pytest.fixture(scope="module")
def organism():
    from interp.organisms import available_organisms

    if "default" not in available_organisms():
        pytest.skip("the bundled organism (assets/organisms/default) is not trained yet")
    from interp.model import load_model

    return load_model("organism", device="cpu")


def test_head_patching_ranks_the_organisms_induction_head_first(organism):
    from scipy.stats import spearmanr

    from interp.organisms import datasets

    length, shown = 12, 6
    ids = torch.tensor([row["input_ids"] for row in datasets.induction_sequences(n=16, length=length, seed=3)])  # <bos> s s
    # Found without patching: the head attending from each token of the repeat to the token after its first occurrence.
    with torch.no_grad():
        _, cache = organism.run_with_cache(ids[:8])
    queries = torch.arange(length + 1, 2 * length + 1)
    scores = torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"][:, :, queries, queries - length + 1].mean(dim=(0, 2)) for layer in range(organism.cfg.n_layers)])
    layer, head = (int(i) for i in torch.unravel_index(scores.argmax(), tuple(scores.shape)))
    assert scores[layer, head] > 0.5, f"the organism has no induction head: {scores}"
    # clean: <bos> s s[:shown], next s[shown]; corrupt: the first occurrence of s[shown] replaced, so copying gives another token
    clean = ids[:8, : 1 + length + shown]
    corrupt = clean.clone()
    corrupt[:, 1 + shown] = ids[8:, 1 + shown]
    metric = logit_diff(answer=clean[:, 1 + shown], wrong=corrupt[:, 1 + shown])
    for direction in ("denoising", "noising"):
        exact = activation_patching(organism, clean, corrupt, metric, site="attn_head_out", by_position=False, direction=direction, progress=False)
        approx = attribution_patching(organism, clean, corrupt, metric, site="attn_head_out", by_position=False, direction=direction)
        assert exact.top(1)[0].label == f"L{layer}H{head}", f"{direction}: induction head L{layer}H{head} (score {scores.max():.2f}); patching ranks {exact.top(3)}"
        correlation = spearmanr(exact.effect.flatten().numpy(), approx.effect.flatten().numpy()).statistic
        assert correlation >= 0.8, f"{direction}: Spearman(attribution, activation patching) over heads = {correlation:.2f}"


# --------------------------------------------------------------------------- result objects


def test_result_labels_figures_and_top_cells(load_tiny):
    model = load_tiny("gpt2")
    clean_text, corrupt_text = "when mary and john went to the store , john gave a drink to", "when mary and john went to the store , mary gave a drink to"
    metric = logit_diff(" mary", " john", tokenizer=model.tokenizer)
    result = activation_patching(model, clean_text, corrupt_text, metric, site="resid_pre", progress=False)
    tokens = model.to_str_tokens(clean_text)
    swapped = tokens.index(" john", 7)
    assert result.axes == ("layer", "pos") and result.values.shape == (model.cfg.n_layers, len(tokens))
    assert result.labels["pos"][0] == f"0:{tokens[0]}" and result.labels["pos"][swapped] == f"{swapped}: john→ mary"
    heatmap = result.figure().data[0]
    assert list(heatmap.x) == list(result.labels["pos"]) and list(heatmap.y) == ["L0", "L1"]
    assert "clean ' john' / corrupt ' mary'" in heatmap.text[0][swapped]
    assert heatmap.zmid == result.corrupt_metric
    top = result.top(3)
    assert abs(top[0].effect) >= abs(top[1].effect) >= abs(top[2].effect)
    assert top[0].label == result.cell_label(top[0].index) and top[0].value == pytest.approx(result.values[top[0].index].item())
    normalized = result.normalized()
    assert normalized.values[0, swapped].item() == pytest.approx(1.0, abs=1e-3) and normalized.corrupt_metric == 0.0

    heads = activation_patching(model, clean_text, corrupt_text, metric, site="attn_head_out", progress=False)
    rows = heads.figure().data[0]
    assert heads.axes == ("layer", "pos", "head") and len(rows.y) == model.cfg.n_layers * model.cfg.n_heads and rows.y[1] == "L0H1"
    per_layer = activation_patching(model, clean_text, corrupt_text, metric, site="mlp_out", by_position=False, progress=False).figure()
    assert per_layer.data[0].mode == "lines+markers" and list(per_layer.data[0].x) == ["L0", "L1"]
    assert {shape.y0 for shape in per_layer.layout.shapes} == {result.clean_metric, result.corrupt_metric}


def test_grouped_key_value_heads_are_labelled(load_tiny):
    model = load_tiny("llama")
    clean, corrupt = token_pairs(model)
    keys = attribution_patching(model, clean, corrupt, make_metric(), site="attn_head_key", by_position=False)
    assert keys.values.shape == (model.cfg.n_layers, model.cfg.n_key_value_heads)
    assert keys.labels["head"] == ("KV0", "KV1")


def test_save_and_load_round_trip(load_tiny, tmp_path):
    model = load_tiny("llama")
    clean, corrupt = token_pairs(model)
    result = activation_patching(model, clean, corrupt, make_metric(), site="attn_head_pattern", direction="noising", progress=False)
    directory = result.save(tmp_path / "pattern")
    assert {p.name for p in directory.iterdir()} == set(RESULT_FILES) == {"result.json", "values.safetensors", "cells.csv", "figure.html"}
    loaded = PatchingResult.load(directory)
    assert torch.equal(loaded.values, result.values) and loaded.labels == result.labels and loaded.axes == result.axes
    assert (loaded.site, loaded.method, loaded.direction, loaded.provenance) == ("attn_head_pattern", "activation", "noising", result.provenance)
    assert loaded.provenance.hooks[0] == "blocks.0.attn.hook_pattern"
    assert result.fast_path is True and (loaded.fast_path, loaded.fallback_reason) == (True, ""), result.fallback_reason
    assert "metric_columns" in result.shortcuts and loaded.shortcuts == result.shortcuts, (result.shortcuts, loaded.shortcuts)
    meta = json.loads((directory / "result.json").read_text())
    del meta["fast_path"], meta["fallback_reason"], meta["shortcuts"]  # a result saved before interp recorded the fast path
    (directory / "result.json").write_text(json.dumps(meta))
    old = PatchingResult.load(directory)
    assert (old.fast_path, old.fallback_reason, old.shortcuts) == (None, "", ()) and torch.equal(old.values, result.values)
    with pytest.raises(InterpError, match="given exactly when fast_path is False"):
        replace(result, fast_path=False)
    with pytest.raises(InterpError, match="not known"):
        replace(result, shortcuts=("skip_everything",))
    rows = list(csv.reader(io.StringIO((directory / "cells.csv").read_text())))
    assert len(rows) == 1 + result.values.numel() and rows[0][:3] == ["layer", "pos", "head"]
    assert float(rows[1][-2]) == result.values[0, 0, 0].item()
    with pytest.raises(InterpError, match="holds no saved patching result"):
        PatchingResult.load(tmp_path)


# --------------------------------------------------------------------------- metrics


def test_metrics_against_direct_computation():
    logits = torch.randn(3, 5, 11)
    assert torch.allclose(logit_diff(answer=[1, 2, 3], wrong=4)(logits), logits[:, -1, [1, 2, 3]].diagonal() - logits[:, -1, 4])
    assert torch.allclose(metrics.probability(answer=7)(logits), logits[:, -1].softmax(-1)[:, 7])
    reference = torch.randn(3, 5, 11)
    p, q = reference[:, -1].softmax(-1), logits[:, -1].softmax(-1)
    assert torch.allclose(metrics.kl_divergence(reference)(logits), (p * (p.log() - q.log())).sum(-1), atol=1e-6)
    last = torch.tensor([0, 2, 4])
    assert torch.allclose(logit_diff(1, 4)(logits, last), logits[[0, 1, 2], last, 1] - logits[[0, 1, 2], last, 4])
    normalized = metrics.normalized(logit_diff(1, 4), clean=logits, corrupt=reference)
    assert normalized(logits).mean().item() == pytest.approx(1.0) and normalized(reference).mean().item() == pytest.approx(0.0, abs=1e-6)


def test_metrics_module_examples_run():
    failures, _ = doctest.testmod(metrics, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_shapes_are_checked_at_runtime_with_jaxtyping():
    from beartype import beartype
    from jaxtyping import TypeCheckError, jaxtyped

    checked = jaxtyped(typechecker=beartype)(metrics.last_logits)
    assert checked(torch.zeros(2, 3, 5), torch.tensor([0, 2])).shape == (2, 5)
    with pytest.raises(TypeCheckError):
        checked(torch.zeros(2, 3, 5), torch.tensor([0, 1, 2]))  # one index per row


# --------------------------------------------------------------------------- bad input


def test_bad_input_says_what_to_fix(load_tiny):
    model = load_tiny("llama")
    clean, corrupt = token_pairs(model)
    metric = make_metric()
    with pytest.raises(InterpError, match=r"clean prompts are 6 tokens long but corrupt prompts are 10 .*same length"):
        activation_patching(model, "a cat sat", "the quick brown fox", metric, progress=False)
    with pytest.raises(InterpError, match="clean prompts tokenize to different lengths"):
        activation_patching(model, ["a cat sat", "the quick brown fox"], ["a cat sat", "a cat sat"], metric, progress=False)
    with pytest.raises(InterpError, match="got 2 clean prompts but 1 corrupt prompts"):
        activation_patching(model, clean, corrupt[:1], metric, progress=False)
    with pytest.raises(InterpError, match=r"returned shape \(2, 320\) .* must return a scalar or one value per prompt \(2,\)"):
        activation_patching(model, clean, corrupt, lambda logits: logits[:, -1], progress=False)
    with pytest.raises(InterpError, match=r"returned shape \(2, 320\)"):
        attribution_patching(model, clean, corrupt, lambda logits: logits[:, -1])
    with pytest.raises(InterpError, match="unknown patching site 'resid_pree'. Did you mean 'resid_pre'"):
        activation_patching(model, clean, corrupt, metric, site="resid_pree", progress=False)
    with pytest.raises(InterpError, match="direction must be 'denoising'"):
        activation_patching(model, clean, corrupt, metric, direction="forwards", progress=False)
    with pytest.raises(InterpError, match="batch_size must be at least 1"):
        activation_patching(model, clean, corrupt, metric, batch_size=0, progress=False)
    with pytest.raises(InterpError, match="token ids must be in 0..319"):
        activation_patching(model, clean + 1000, corrupt, metric, progress=False)
    with pytest.raises(InterpError, match="not differentiable"):
        attribution_patching(model, clean, corrupt, lambda logits: logits[:, -1].argmax(-1).float())
    with pytest.raises(InterpError, match="' fox' is 2 tokens"):
        logit_diff(" fox", " dog", tokenizer=model.tokenizer)
    with pytest.raises(InterpError, match="the metric has 3 answer tokens but the logits have 2 rows"):
        activation_patching(model, clean, corrupt, logit_diff([1, 2, 3], 4), progress=False)


# --------------------------------------------------------------------------- command line


def test_cli_patch_writes_one_directory_per_method_and_site(tiny_model_dirs, tmp_path, capsys):
    from interp.cli import main

    (tmp_path / "clean.txt").write_text("when mary and john went to the store , john gave a drink to\n")
    (tmp_path / "corrupt.txt").write_text("when mary and john went to the store , mary gave a drink to\n")
    argv = ["patch", "--model", str(tiny_model_dirs["gpt2"]), "--device", "cpu", "--clean", str(tmp_path / "clean.txt"), "--corrupt", str(tmp_path / "corrupt.txt"),
            "--answer", " mary", "--wrong", " john", "--site", "resid_pre,attn_head_out", "--method", "both", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["activation_attn_head_out", "activation_resid_pre", "attribution_attn_head_out", "attribution_resid_pre"]
    loaded = PatchingResult.load(tmp_path / "out" / "activation_attn_head_out")
    assert loaded.axes == ("layer", "pos", "head") and loaded.metric_name == "logit_diff"  # one cell per position by default
    assert "top: L" in capsys.readouterr().out
    assert main([*argv[:-1], str(tmp_path / "whole"), "--method", "activation", "--site", "attn_head_out", "--no-by-position"]) == 0
    assert PatchingResult.load(tmp_path / "whole" / "activation_attn_head_out").axes == ("layer", "head")
    capsys.readouterr()

    (tmp_path / "short.txt").write_text("when mary and john went\n")
    assert main([*argv[:8], str(tmp_path / "short.txt"), *argv[9:]]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("interp: error: clean prompts are") and "\n" not in error
    assert main([*argv[:-6], "--site", "heads", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown patching site 'heads'" in capsys.readouterr().err


def test_by_position_has_one_default_in_the_function_the_toml_and_the_cli():
    """The default that once differed: ``interp patch`` patched every position while the function and TOML went by position."""
    import inspect

    from interp.commands import build_parser
    from interp.experiments.patching import PatchingConfig

    function = inspect.signature(activation_patching).parameters["by_position"].default
    toml = PatchingConfig.__dataclass_fields__["by_position"].default
    cli = build_parser().parse_args(["patch", "--clean", "c.txt", "--corrupt", "d.txt", "--answer", "a", "--out", "o"]).by_position
    assert function is toml is cli is True
