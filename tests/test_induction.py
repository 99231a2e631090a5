"""Induction heads (``interp.mechanisms.induction``): the pieces against independent references on a tiny Llama,
the organism's planted head, and the finding on SmolLM2-135M-Instruct (``circuits/induction_smollm2/``)."""

import time

import pytest
import torch

from interp.errors import InterpError
from interp.mechanisms.induction import (
    FAST_PATH_TOLERANCE,
    InductionResult,
    _clean_pass,
    _repeat_loss,
    head_means,
    induction_heads,
    mean_ablated,
    ranked_heads,
    repeated_random_tokens,
    same_layer_draws,
)
from interp.provenance import Provenance

SCORE_TOLERANCE = 1e-5  # induction scores from the bridge's hook_pattern vs Hugging Face's own attention weights
LOGIT_TOLERANCE = 1e-4  # mean-ablation at hook_z vs the same change made in the weights


def _reference_scores(directory, tokens: torch.Tensor, length: int) -> torch.Tensor:
    """Induction scores from a plain Hugging Face model's eager attention weights (``output_attentions``), not from any hook."""
    from transformers import AutoModelForCausalLM

    hf_model = AutoModelForCausalLM.from_pretrained(str(directory), attn_implementation="eager").eval()
    with torch.no_grad():
        attentions = hf_model(input_ids=tokens, output_attentions=True).attentions
    queries = torch.arange(length + 1, 2 * length + 1)
    return torch.stack([att[:, :, queries, queries - length + 1].mean((0, 2)) for att in attentions])


@pytest.fixture(scope="module")
def llama(tiny_model_dirs):
    """A tiny random Llama of its own (these tests change its weights, restoring them)."""
    from interp.model import load_model

    return load_model(tiny_model_dirs["llama"], device="cpu")


def test_repeated_random_tokens_are_bos_then_one_random_half_twice_without_special_tokens(llama):
    tokenizer = llama.tokenizer
    tokens = repeated_random_tokens(tokenizer, n_sequences=6, length=10, seed=3)
    assert tokens.shape == (6, 21), tokens.shape
    assert (tokens[:, 0] == tokenizer.bos_token_id).all(), tokens[:, 0]
    assert torch.equal(tokens[:, 1:11], tokens[:, 11:]), "the second half must repeat the first"
    assert not set(tokens[:, 1:].flatten().tolist()) & set(tokenizer.all_special_ids), "special tokens drawn"
    assert torch.equal(tokens, repeated_random_tokens(tokenizer, 6, 10, seed=3)), "same seed, same tokens"
    assert not torch.equal(tokens, repeated_random_tokens(tokenizer, 6, 10, seed=4)), "another seed, other tokens"
    with pytest.raises(InterpError, match=r"at least 1 sequence of at least 2 tokens, got n_sequences=0"):
        repeated_random_tokens(tokenizer, 0, 10)


def test_induction_scores_equal_those_from_hugging_face_attention_weights(llama, tiny_model_dirs):
    length = 12
    tokens = repeated_random_tokens(llama.tokenizer, 4, length, seed=0)
    ours = _clean_pass(llama, tokens, batch_size=3).scores
    reference = _reference_scores(tiny_model_dirs["llama"], tokens, length)
    assert ours.shape == (2, 4), ours.shape
    difference = (ours - reference).abs().max().item()
    assert difference < SCORE_TOLERANCE, f"induction scores differ from the HF attention stripe by {difference:.2g}:\n{ours}\n{reference}"


def test_mean_ablation_at_hook_z_equals_the_same_change_in_the_weights_and_is_undone_on_exit(llama):
    """Ablating head h of layer l to a mean m at hook_z equals adding W_O[h] m in place of that head's output:
    with m = 0, zeroing its columns of o_proj. The hooks are gone afterwards, also after an exception."""
    tokens = repeated_random_tokens(llama.tokenizer, 2, 8, seed=1)
    d_head = int(llama.cfg.d_head)
    with torch.no_grad():
        before = llama(tokens)
        zeros = torch.zeros(2, 4, d_head)
        with mean_ablated(llama, [(1, 2), (0, 0)], zeros):
            ablated = llama(tokens)
        o_proj = [llama.original_model.model.layers[layer].self_attn.o_proj.weight for layer in (0, 1)]
        saved = [weight.clone() for weight in o_proj]
        try:
            o_proj[1][:, 2 * d_head:3 * d_head] = 0
            o_proj[0][:, 0:d_head] = 0
            reference = llama(tokens)
        finally:
            for weight, value in zip(o_proj, saved):
                weight.copy_(value)
        after = llama(tokens)
    difference = (ablated - reference).abs().max().item()
    assert difference < LOGIT_TOLERANCE, f"mean-ablation to zero differs from zeroing o_proj columns by {difference:.2g}"
    assert (ablated - before).abs().max() > 1e-3, "the ablation changed nothing"
    assert torch.equal(after, before), "the model must compute what it did before the with"
    with pytest.raises(RuntimeError, match="inside"), mean_ablated(llama, [(0, 1)], zeros):
        raise RuntimeError("inside")
    with torch.no_grad():
        assert torch.equal(llama(tokens), before), "hooks left behind after an exception"
    with pytest.raises(InterpError, match=r"head L2H0 does not exist; the model has 2 layers of 4 heads"), mean_ablated(llama, [(2, 0)], zeros):
        pass


def test_head_means_are_the_mean_of_hook_z_and_skipping_early_layers_changes_no_loss(llama):
    tokens = repeated_random_tokens(llama.tokenizer, 3, 10, seed=2)
    seen = []
    with torch.no_grad(), llama.hooks(fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: seen.append(z.clone()))]):
        llama(tokens)
    means = head_means(llama, tokens, batch_size=2)
    assert torch.allclose(means[1], seen[0].mean((0, 1)), atol=1e-6), "head_means is not the mean of hook_z over sequences and positions"
    clean = _clean_pass(llama, tokens, batch_size=2)
    with mean_ablated(llama, [(1, 3)], means):
        full = _repeat_loss(llama, tokens, clean, None, 2, "", False)
        skipped = _repeat_loss(llama, tokens, clean, 1, 2, "", False)
    difference = (full - skipped).abs().max().item()
    assert difference < FAST_PATH_TOLERANCE / 10, f"starting the ablated run at layer 1 changed the loss by {difference:.2g}"
    assert (full - clean.loss[:, 10:]).abs().max() > 1e-4, "the ablation changed nothing"


def test_random_draws_come_from_the_same_layers_and_never_repeat_a_top_head():
    top = [(3, 0), (3, 1), (5, 2)]
    draws = same_layer_draws(top, n_heads=4, n_draws=20, seed=0)
    assert len(draws) == 20
    for draw in draws:
        assert [layer for layer, _ in draw] == [3, 3, 5], draw
        assert not set(draw) & set(top) and len(set(draw)) == 3, draw
    assert draws == same_layer_draws(top, n_heads=4, n_draws=20, seed=0), "same seed, same draws"
    with pytest.raises(InterpError, match=r"layer 3 has no head left to draw: its 4 heads"):
        same_layer_draws([(3, 0), (3, 1), (3, 2)], n_heads=4, n_draws=1)
    assert ranked_heads(torch.tensor([[0.1, 0.5], [0.5, 0.2]])) == [(0, 1), (1, 0), (1, 1), (0, 0)]


def _result(**change) -> InductionResult:
    tokens = torch.cat([torch.ones(2, 1, dtype=torch.long), torch.arange(6).reshape(2, 3) + 3, torch.arange(6).reshape(2, 3) + 3], 1)
    fields = {
        "scores": torch.tensor([[0.1, 0.9], [0.4, 0.2]]), "tokens": tokens, "first_loss": torch.full((2, 3), 8.0), "repeat_loss": torch.full((2, 3), 2.0),
        "ablations": (((0, 1),), ((0, 0),), ((0, 0),)), "ablated_repeat_loss": torch.stack([torch.full((2, 3), 6.0), torch.full((2, 3), 3.0), torch.full((2, 3), 2.0)]),
        "provenance": Provenance(model_id="tiny", weights_hash="abc", seed=0),
    }  # fmt: skip
    return InductionResult(**(fields | change))


def test_the_result_computes_its_numbers_draws_its_figure_and_round_trips(tmp_path):
    result = _result()
    assert (result.loss_ratio, result.increase_top, result.increase_random, result.ablation_ratio) == (0.25, 4.0, 0.5, 8.0)
    assert result.top(2) == ((0, 1, pytest.approx(0.9)), (1, 0, pytest.approx(0.4)))
    figure = result.figure()
    heatmap = figure.data[0]
    assert heatmap.x == ("H0", "H1") and heatmap.y == ("L0", "L1"), (heatmap.x, heatmap.y)
    assert heatmap.z[0][1] == pytest.approx(0.9)
    assert "L0H1<br>induction score 0.900<br>rank 1 of 4<br>mean-ablated as a top head" == heatmap.customdata[0][1]
    assert "repeat/first loss 0.25" in figure.layout.title.text and "+4.00 nats vs +0.50" in figure.layout.title.text
    loaded = InductionResult.load(result.save(tmp_path / "induction"))
    assert loaded.summary() == result.summary() and loaded.ablations == result.ablations
    assert torch.equal(loaded.ablated_repeat_loss, result.ablated_repeat_loss)
    assert (tmp_path / "induction" / "induction.html").is_file()
    assert (tmp_path / "induction" / "heads.csv").read_text().splitlines()[1] == "1,0,1,0.9"
    with pytest.raises(InterpError, match=r"ablated_repeat_loss has shape \(2, 2, 3\), expected \(3, 2, 3\)"):
        _result(ablated_repeat_loss=torch.zeros(2, 2, 3))
    with pytest.raises(InterpError, match=r"head L5H0 does not exist"):
        _result(ablations=(((5, 0),), ((0, 0),), ((0, 0),)))


def test_the_method_finds_the_organisms_planted_induction_head():
    """The organism's README: induction head L3H0 scores 0.94 (its own held-out sequences)."""
    from interp.model import load_model

    organism = load_model("organism", device="cpu")
    result = induction_heads(organism, n_sequences=16, length=20, top_k=1, n_random=1)
    print(f"\norganism: repeat/first loss {result.loss_ratio:.3f}; top heads " + ", ".join(f"L{l}H{h} {s:.3f}" for l, h, s in result.top(4)))
    assert result.top_heads == ((3, 0),), result.top(4)
    assert result.top(1)[0][2] > 0.9, result.top(4)
    assert result.loss_ratio <= 0.30, result.loss_ratio


def test_smollm2_copies_with_induction_heads_whose_ablation_breaks_copying(smollm2):
    """The finding of ``circuits/induction_smollm2/`` at a small size: 8 sequences x 2 x 40 tokens, 5 random draws."""
    began = time.perf_counter()
    result = induction_heads(smollm2, n_sequences=8, length=40, seed=0, top_k=5, n_random=5)
    seconds = time.perf_counter() - began
    summary = result.summary()
    print(f"\nSmolLM2-135M-Instruct, 8 x 2 x 40 tokens ({seconds:.0f} s): loss first {summary['loss_first']:.3f}, repeat "
          f"{summary['loss_repeat']:.3f}, ratio {summary['loss_ratio']:.3f}")  # fmt: skip
    print("top 10: " + ", ".join(f"L{l}H{h} {s:.3f}" for l, h, s in result.top(10)))
    print(f"ablating the top 5: +{summary['increase_top']:.3f} nats; random same-layer draws +{summary['increase_random']:.3f} "
          f"({summary['increase_random_draws']}); ratio {summary['ablation_ratio']:.1f}x")  # fmt: skip
    assert result.loss_ratio <= 0.30, f"repeat loss is {result.loss_ratio:.3f} of the first occurrence's (target <= 0.30)"
    assert len(result.random_heads) == 5
    top_layers = sorted(layer for layer, _ in result.top_heads)
    for draw in result.random_heads:
        assert sorted(layer for layer, _ in draw) == top_layers and not set(draw) & set(result.top_heads), draw
    assert result.ablation_ratio >= 2.0, f"ablating the top 5 raises the repeat loss {result.ablation_ratio:.2f}x as much as 5 random same-layer heads (target >= 2)"


def test_docstring_examples_run():
    import doctest

    import interp.mechanisms.induction

    assert doctest.testmod(interp.mechanisms.induction).failed == 0


def test_the_annotated_shapes_hold_at_runtime(llama):
    """jaxtyping + beartype check the shapes in the signatures of the token maker and the head ranking."""
    jaxtyping = pytest.importorskip("jaxtyping")
    beartype = pytest.importorskip("beartype")
    checked_tokens = jaxtyping.jaxtyped(typechecker=beartype.beartype)(repeated_random_tokens)
    assert checked_tokens(llama.tokenizer, 2, 5).shape == (2, 11)
    checked_rank = jaxtyping.jaxtyped(typechecker=beartype.beartype)(ranked_heads)
    assert checked_rank(torch.tensor([[0.2, 0.1]])) == [(0, 0), (0, 1)]
    with pytest.raises(jaxtyping.TypeCheckError):
        checked_rank(torch.zeros(3))
