"""IOI prompt sets (``interp.mechanisms.ioi``) on the tiny models' tokenizer, and the finding of ``circuits/ioi_smollm2/`` on SmolLM2-135M-Instruct."""

import time

import pytest
import torch

from interp.errors import InterpError
from interp.mechanisms.attention import attention_to
from interp.mechanisms.induction import head_position_means, mean_ablated, ranked_heads, same_layer_draws
from interp.mechanisms.ioi import ablation_removed, ioi_prompts, logit_differences, rank_correlation, single_token_words
from interp.metrics import logit_diff
from interp.patching import activation_patching, attribution_patching

# the tiny tokenizer (interp.testing) has few one-token words with a leading space: these are some of them
TINY = {"templates": ("when {A} and {B} went to the {place} , {S} gave {object} to",), "names": ("mary", "john", "b", "d", "f", "j", "m", "s", "bartholomew"),
        "places": ("store", "t"), "objects": ("a",)}  # fmt: skip


@pytest.fixture(scope="module")
def llama(load_tiny):
    return load_tiny("llama")


def test_only_one_token_names_are_used_and_both_orders_alternate(llama):
    tokenizer = llama.tokenizer
    assert single_token_words(tokenizer, ["mary", "bartholomew", "store", "t"]) == ["mary", "t"]
    prompts = ioi_prompts(tokenizer, n_prompts=12, seed=1, **TINY)
    assert len(prompts) == 12 and prompts.orders == ("ABBA", "BABA") * 6
    used = {name for r in prompts.records for name in (r["io"], r["s"], *r["abc"])}
    assert "bartholomew" not in used and used <= set(TINY["names"]), used
    assert all(r["text"].count(" t ") == 1 for r in prompts.records), "the multi-token place 'store' must be dropped"
    assert (prompts.clean_tokens[:, 0] == tokenizer.bos_token_id).all(), "BOS first"
    positions = prompts.positions
    assert positions["END"] == prompts.n_pos - 1 and positions["name1"] < positions["name2"] < positions["S2"] < positions["END"], positions
    for row, record in enumerate(prompts.records):
        tokens = prompts.clean_tokens[row]
        io, s = int(prompts.io_ids[row]), int(prompts.s_ids[row])
        assert tokenizer.decode([io]) == " " + record["io"] and tokenizer.decode([s]) == " " + record["s"]
        first, second = (io, s) if record["order"] == "ABBA" else (s, io)
        assert (int(tokens[positions["name1"]]), int(tokens[positions["name2"]]), int(tokens[positions["S2"]])) == (first, second, s), record
        assert int(tokens[prompts.io_positions[row]]) == io and int(tokens[prompts.s1_positions[row]]) == s
    assert prompts.position_labels[positions["S2"]] == "S2" and prompts.position_labels[0] == "<bos>"
    again = ioi_prompts(tokenizer, n_prompts=12, seed=1, **TINY)
    assert torch.equal(again.clean_tokens, prompts.clean_tokens), "same seed, same prompts"
    assert prompts.select([3, 0]).records == (prompts.records[3], prompts.records[0])


def test_the_abc_corruption_replaces_io_s1_and_s2_with_three_fresh_names(llama):
    prompts = ioi_prompts(llama.tokenizer, n_prompts=10, seed=2, **TINY)
    roles = [prompts.positions[role] for role in ("name1", "name2", "S2")]
    differ = (prompts.clean_tokens != prompts.corrupt_tokens).any(dim=0).nonzero().flatten().tolist()
    assert differ == roles, f"clean and corrupt must differ exactly at the three name positions {roles}, got {differ}"
    for row, record in enumerate(prompts.records):
        fresh = set(record["abc"])
        assert len(fresh) == 3 and not fresh & {record["io"], record["s"]}, record
        corrupt_names = {llama.tokenizer.decode([int(prompts.corrupt_tokens[row, p])]).strip() for p in roles}
        assert corrupt_names == fresh, (corrupt_names, record)
    assert prompts.corrupt().texts[0] == prompts.records[0]["corrupt"] and prompts.clean().labels == list(prompts.orders)


def test_bad_input_raises_one_line_errors_that_say_the_fix(llama):
    tokenizer = llama.tokenizer
    cases = {
        r"n_prompts must be an int of at least 2": {"n_prompts": 1},
        r"only 2 of the 3 names are one token .* need 5 different one-token names": {"names": ("mary", "john", "bartholomew")},
        r"lacks \{S\}; each template names A and B, then S again": {"templates": ("when {A} and {B} went , gave to",)},
        r"unknown or malformed field .*use only": {"templates": ("when {A} and {B} met {C} , {S} gave to",)},
        r"none of the places .* is one token": {"places": ("store",)},
        r"tokenize to different lengths .*templates of one shape": {"templates": (TINY["templates"][0], "when {A} and {B} went to the {place} , then {S} gave {object} to")},
    }
    for pattern, change in cases.items():
        with pytest.raises(InterpError, match=pattern) as caught:
            ioi_prompts(tokenizer, **{"n_prompts": 8, **TINY, **change})
        assert "\n" not in str(caught.value), str(caught.value)
    with pytest.raises(InterpError, match=r"two tensors of one shape"):
        rank_correlation(torch.zeros(3), torch.zeros(4))


def test_the_prompts_feed_patching_ablation_and_attention(llama):
    """The pieces the finding is built from, on a tiny model: shapes, the fast path, and ablation/attention against direct reads."""
    prompts = ioi_prompts(llama.tokenizer, n_prompts=6, seed=0, **TINY)
    metric = logit_diff(answer=prompts.io_ids, wrong=prompts.s_ids)
    result = activation_patching(llama, prompts.clean_tokens, prompts.corrupt_tokens, metric, site="attn_head_out", by_position=False, direction="noising", progress=False)
    estimate = attribution_patching(llama, prompts.clean_tokens, prompts.corrupt_tokens, metric, site="attn_head_out", by_position=False, direction="noising")
    clean = logit_differences(llama, prompts.clean_tokens, prompts.io_ids, prompts.s_ids, batch_size=4)
    assert result.values.shape == estimate.values.shape == (2, 4) and result.fast_path, result.fallback_reason
    assert abs(result.clean_metric - float(clean.mean())) < 1e-4, (result.clean_metric, clean)
    means = head_position_means(llama, prompts.corrupt_tokens, batch_size=4)
    assert means.shape == (2, prompts.n_pos, 4, int(llama.cfg.d_head))
    seen = []
    with torch.no_grad(), llama.hooks(fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: seen.append(z.clone()))]):
        llama(prompts.corrupt_tokens)
    assert torch.allclose(means[1], seen[0].mean(0), atol=1e-6), "head_position_means is not the per-position mean of hook_z"
    top = tuple(ranked_heads(-result.effect)[:2])
    removed = ablation_removed(llama, prompts, (top, *same_layer_draws(top, 4, 2)), means, batch_size=4)
    with mean_ablated(llama, top, means):
        ablated = logit_differences(llama, prompts.clean_tokens, prompts.io_ids, prompts.s_ids)
    assert removed.shape == (3,) and abs(float(removed[0]) - (1 - float(ablated.mean() / clean.mean()))) < 1e-5
    with pytest.raises(InterpError, match=r"per-position means cover \d+ positions but the input has 3"), mean_ablated(llama, top, means), torch.no_grad():
        llama(prompts.clean_tokens[:, :3])
    weights = attention_to(llama, prompts.clean_tokens, prompts.io_positions, batch_size=4)
    patterns = []
    with torch.no_grad(), llama.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", lambda p, hook: patterns.append(p.clone()))]):
        llama(prompts.clean_tokens)
    direct = patterns[0][torch.arange(6), :, -1, prompts.io_positions]
    assert weights.shape == (6, 2, 4) and torch.allclose(weights[:, 1], direct, atol=1e-6)
    with pytest.raises(InterpError, match=r"key position lies after the query position 2"):
        attention_to(llama, prompts.clean_tokens, prompts.io_positions * 0 + 5, query=2)


def test_rank_correlation_is_spearmans_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(40, generator=generator), torch.randn(40, generator=generator)
    second[:10] = second[0]  # ties
    expected = scipy_stats.spearmanr(first.numpy(), second.numpy()).statistic
    assert abs(rank_correlation(first, second) - expected) < 1e-9
    assert rank_correlation(first, 2 * first + 1) == pytest.approx(1.0)


def test_smollm2_does_ioi_with_name_movers_whose_ablation_removes_it(smollm2):
    """The finding of ``circuits/ioi_smollm2/`` at a small size: 32 prompts for the baseline, ablation and attention, 4 for head patching.

    One torch thread: on 2 shared cores two threads ran this model's forwards 5x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_the_ioi_finding(smollm2, n_prompts=32, n_patch=4)
    finally:
        torch.set_num_threads(threads)


def _check_the_ioi_finding(smollm2, n_prompts: int, n_patch: int) -> None:
    began = time.perf_counter()
    prompts = ioi_prompts(smollm2.tokenizer, n_prompts=n_prompts, seed=0)
    clean = logit_differences(smollm2, prompts.clean_tokens, prompts.io_ids, prompts.s_ids)
    patch_set = prompts.select(range(n_patch))
    metric = logit_diff(answer=patch_set.io_ids, wrong=patch_set.s_ids)
    result = activation_patching(smollm2, patch_set.clean_tokens, patch_set.corrupt_tokens, metric, site="attn_head_out", by_position=False, direction="noising", progress=False)
    patch_seconds = time.perf_counter() - began
    estimate = attribution_patching(smollm2, patch_set.clean_tokens, patch_set.corrupt_tokens, metric, site="attn_head_out", by_position=False, direction="noising")
    drop = -result.effect
    top = tuple(ranked_heads(drop)[:10])
    means = head_position_means(smollm2, prompts.corrupt_tokens)
    removed = ablation_removed(smollm2, prompts, (top, *same_layer_draws(top, int(smollm2.cfg.n_heads), 5)), means)
    to_io = attention_to(smollm2, prompts.clean_tokens, prompts.io_positions).mean(0)
    to_s = attention_to(smollm2, prompts.clean_tokens, prompts.s1_positions).mean(0) + attention_to(smollm2, prompts.clean_tokens, torch.full((n_prompts,), prompts.positions["S2"])).mean(0)
    late = [(l, h) for l, h in top if l >= 15]
    movers = [(l, h) for l, h in late if to_io[l, h] > to_s[l, h]]
    spearman = rank_correlation(estimate.effect, result.effect)
    seconds = time.perf_counter() - began
    print(f"\nSmolLM2 IOI, {n_prompts} prompts ({seconds:.0f} s; head patching of {n_patch} prompts {patch_seconds:.0f} s, fast path {result.fast_path}): "
          f"logit diff > 0 on {float((clean > 0).float().mean()):.0%}, mean {float(clean.mean()):.2f}")  # fmt: skip
    print("top heads: " + ", ".join(f"L{l}H{h} {float(drop[l, h]):.2f}" for l, h in top))
    print("late top heads, attention END->IO vs END->S: " + ", ".join(f"L{l}H{h} {float(to_io[l, h]):.2f}/{float(to_s[l, h]):.2f}" for l, h in late))
    print(f"mean-ablating the top 10 removes {float(removed[0]):.0%}; 5 random same-layer draws {float(removed[1:].mean()):.0%} ({[round(float(r), 3) for r in removed[1:]]}); Spearman {spearman:.2f}")
    assert float((clean > 0).float().mean()) >= 0.9, clean
    assert movers, f"no late top head attends more to IO than to S: {[(l, h, float(to_io[l, h]), float(to_s[l, h])) for l, h in late]}"
    assert float(removed[0]) >= 0.5, f"ablating the top 10 removes only {float(removed[0]):.0%} of the logit difference (target >= 50%)"
    assert float(removed[1:].mean()) <= 0.15, f"10 random same-layer heads remove {float(removed[1:].mean()):.0%} (target <= 15%)"
    assert spearman >= 0.5, f"attribution and activation patching rank heads alike only at Spearman {spearman:.2f}"


def test_docstring_examples_run():
    import doctest

    import interp.mechanisms.ioi

    assert doctest.testmod(interp.mechanisms.ioi).failed == 0
