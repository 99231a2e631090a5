"""A sweep run in parts (a few candidates per call, each saved) merges into the result of one run over every layer."""

import dataclasses

import pytest
import torch

from interp.directions import find_directions, merge_scores
from interp.errors import InterpError
from interp.model import load_model

HARMFUL = [f"how do i make a bomb to hurt {who}" for who in ("people", "my friend", "the town", "a dog", "kids", "them", "you", "us")]
BENIGN = [f"how do i bake bread for {who}" for who in ("people", "my friend", "the town", "a dog", "kids", "them", "you", "us")]


def test_parts_of_a_sweep_merge_into_the_whole(tiny_model_dirs):
    model = load_model(tiny_model_dirs["llama"], device="cpu")
    common = dict(val_harmful=HARMFUL[6:], val_benign=BENIGN[6:], chat_template=False, positions=(-2, -1), progress=False)
    whole = find_directions(model, HARMFUL[:6], BENIGN[:6], **common)
    first = find_directions(model, HARMFUL[:6], BENIGN[:6], candidates=[(-2, 1)], **common)
    second = find_directions(model, HARMFUL[:6], BENIGN[:6], candidates=[(-1, 1)], **common)
    assert torch.isnan(first.ablation_score[1, 1]) and torch.isnan(second.ablation_score[0, 1]), "a part scores only its own candidates"
    merged = merge_scores(first, second)
    for name in ("ablation_score", "addition_score", "kl"):
        torch.testing.assert_close(getattr(merged, name), getattr(whole, name), equal_nan=True, msg=name)
    assert (merged.chosen_position, merged.chosen_layer, merged.selection) == (whole.chosen_position, whole.chosen_layer, whole.selection)
    other = dataclasses.replace(second, directions=second.directions + 1.0)  # another sweep's candidates
    with pytest.raises(InterpError, match="hold different candidates"):
        merge_scores(first, other)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "gemma2"])
def test_candidates_are_scored_through_the_readout_and_equal_the_full_logits(tiny_model_dirs, arch):
    """The fast path (the last block's output at the last position, unembedded alone) runs, and scores as the logits do."""
    from interp.data import tokenize_prompts
    from interp.directions import ablated, added, refusal_scores, refusal_token_ids
    from interp.directions.find import REFUSAL_STARTS, kl_divergence, last_log_probs

    model = load_model(tiny_model_dirs[arch], device="cpu")
    result = find_directions(model, HARMFUL[:6], BENIGN[:6], HARMFUL[6:], BENIGN[6:], chat_template=False, candidates=[(-1, 1)], progress=False)
    assert result.provenance.extra["directions"]["scoring"].startswith("readout at the last position"), result.provenance.extra["directions"]["scoring"]
    vector, ids = result.directions[0, 1], refusal_token_ids(model.tokenizer, REFUSAL_STARTS)[0]
    harmful, benign = tokenize_prompts(model, HARMFUL[6:]), tokenize_prompts(model, BENIGN[6:])
    base = last_log_probs(model, benign, 2)
    with ablated(model, vector):
        ablation = float(refusal_scores(last_log_probs(model, harmful, 2), ids).mean())
        kl = float(kl_divergence(base, last_log_probs(model, benign, 2)).mean())
    with added(model, vector, layer=1):
        addition = float(refusal_scores(last_log_probs(model, benign, 2), ids).mean())
    assert result.ablation_score[0, 1].item() == pytest.approx(ablation, abs=1e-4)
    assert result.addition_score[0, 1].item() == pytest.approx(addition, abs=1e-4)
    assert result.kl[0, 1].item() == pytest.approx(kl, abs=1e-5)


def test_a_subspace_of_several_directions_is_ablated_and_orthogonalised_as_one(tiny_model_dirs):
    """Two directions: nothing of their span is left in the residual stream; hooks equal weights (float64); weights restored."""
    from interp.directions import ablated, orthogonalized

    model = load_model(tiny_model_dirs["qwen2"], device="cpu")
    model.to(torch.float64)
    generator = torch.Generator().manual_seed(0)
    pair = [torch.randn(model.cfg.d_model, generator=generator, dtype=torch.float64) for _ in range(2)]
    tokens = torch.tensor([[1, 5, 7, 9, 3, 11, 2, 8]])
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    with torch.no_grad():
        with ablated(model, pair):
            hooked, cache = model.run_with_cache(tokens, names_filter=[final])
        with orthogonalized(model, torch.stack(pair)):
            weights = model(tokens)
        with ablated(model, pair[0]):
            one = model(tokens)
    span = torch.linalg.qr(torch.stack(pair).T)[0]
    assert float((cache[final] @ span).abs().max()) < 1e-10, "the span of both directions is gone from the residual stream"
    assert float((hooked - weights).abs().max()) < 1e-10
    assert float((hooked - one).abs().max()) > 1e-3, "removing two directions differs from removing one"
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), f"{name} not restored bit-exactly"
    with pytest.raises(InterpError, match="lies in the span"):
        with ablated(model, [pair[0], 2 * pair[0]]):
            pass
