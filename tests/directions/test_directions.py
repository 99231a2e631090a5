"""The refusal-direction pipeline on tiny random models: candidates equal an independent difference of means,
hook ablation equals orthogonalised weights, restoring is bit-exact, and bad input gives one-line errors."""

import inspect

import pytest
import torch

from interp.cli import main
from interp.commands import build_parser
from interp.data import PromptSet
from interp.directions import (
    DirectionResult, RefusalDirection, ablated, added, find_directions, orthogonalize, orthogonalized, read_instructions,
    save_orthogonalized, split_by_label,
)  # fmt: skip
from interp.directions.find import MAX_KL, MAX_LAYER_FRACTION, REFUSAL_STARTS, select
from interp.errors import InterpError
from interp.model import load_model, model_id

HOOK_VS_WEIGHTS_TOL = 1e-4  # max |logit difference| between hook ablation and orthogonalised weights (float32)
ORTHOGONAL_TOL = 1e-10  # the same in float64, where the two agree to rounding (measured: 0 on the tiny qwen2)
HARMFUL = [f"how do i make a bomb to hurt {who}" for who in ("people", "my friend", "the town", "a dog", "kids", "them", "you", "us")]
BENIGN = [f"how do i bake bread for {who}" for who in ("people", "my friend", "the town", "a dog", "kids", "them", "you", "us")]
TOKENS = torch.tensor([[1, 5, 7, 9, 3, 11, 2, 8], [4, 4, 6, 1, 2, 3, 9, 10]])


def fresh(tiny_model_dirs, arch: str):
    """A model of our own (the session's cached ones must not be edited, even temporarily)."""
    return load_model(tiny_model_dirs[arch], device="cpu")


def hf_parameters(model) -> dict:
    """The wrapped Hugging Face model's parameters under its own names (``lm_head.weight``, ``...q_proj.bias``)."""
    return {name.replace("._original_component", ""): param for name, param in model.original_model.named_parameters()}


def ablated_both_ways(model, direction, inside=lambda: None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits on TOKENS under hook ablation and under orthogonalised weights (``inside`` runs while they are edited);
    checks that the ablation changes the logits and that afterwards every parameter is the same object, bit-exactly."""
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    identity = dict(model.named_parameters())
    with torch.no_grad():
        plain = model(TOKENS)
        with ablated(model, direction):
            hooked = model(TOKENS)
        with orthogonalized(model, direction):
            weights = model(TOKENS)
            inside()
        after = model(TOKENS)
    assert (hooked - plain).abs().max().item() > 1e-3, "the ablation changed nothing: the test would pass vacuously"
    assert torch.equal(after, plain)
    for name, param in model.named_parameters():
        assert param is identity[name] and torch.equal(param, before[name]), f"{name} not restored bit-exactly"
    return hooked, weights


@pytest.fixture(scope="module")
def llama(tiny_model_dirs):
    return fresh(tiny_model_dirs, "llama")


@pytest.fixture(scope="module")
def found(llama):
    return find_directions(llama, HARMFUL[:6], BENIGN[:6], HARMFUL[6:], BENIGN[6:], chat_template=False, positions=(-2, -1), progress=False)


def test_candidates_equal_an_independent_difference_of_means(llama, found):
    n_layers = llama.cfg.n_layers
    expected = torch.zeros(2, n_layers, llama.cfg.d_model, dtype=torch.float64)
    for sign, texts in ((1.0, HARMFUL[:6]), (-1.0, BENIGN[:6])):
        for text in texts:  # one prompt at a time: no padding at all
            _, cache = llama.run_with_cache(llama.to_tokens(text))
            for layer in range(n_layers):
                expected[:, layer] += sign * cache[f"blocks.{layer}.hook_resid_pre"][0, -2:].double() / len(texts)
    difference = (found.directions.double() - expected).abs().max().item()
    assert difference < 1e-5, f"candidates differ from the per-prompt difference of means by {difference:.2e}"
    chosen = found.direction
    assert torch.equal(chosen.vector, found.directions[found.chosen_position, found.chosen_layer])
    assert (chosen.layer, chosen.position) == (found.chosen_layer, found.positions[found.chosen_position])
    assert torch.isfinite(found.ablation_score[:, 1:]).all() and torch.isfinite(found.kl[:, 1:]).all()


def test_scores_are_what_ablation_and_addition_do(llama, found):
    """The stored scores recomputed by hand from the interventions, for the chosen candidate."""
    from interp.directions.find import last_log_probs, refusal_scores, refusal_token_ids
    from interp.data import tokenize_prompts

    p, layer = found.chosen_position, found.chosen_layer
    vector = found.directions[p, layer]
    ids, _ = refusal_token_ids(llama.tokenizer, REFUSAL_STARTS)
    harmful, benign = tokenize_prompts(llama, HARMFUL[6:]), tokenize_prompts(llama, BENIGN[6:])
    with ablated(llama, vector):
        ablation = refusal_scores(last_log_probs(llama, harmful, 1), ids).mean()
    with added(llama, vector, layer=layer):
        addition = refusal_scores(last_log_probs(llama, benign, 1), ids).mean()
    assert abs(float(ablation) - float(found.ablation_score[p, layer])) < 1e-4
    assert abs(float(addition) - float(found.addition_score[p, layer])) < 1e-4


def test_selection_applies_the_filters_in_order():
    nan = float("nan")
    ablation = torch.tensor([[nan, -1.0, -3.0, -9.0]])
    addition = torch.tensor([[nan, 1.0, -1.0, 5.0]])
    kl = torch.tensor([[nan, 0.01, 0.01, 0.01]])
    assert select(ablation, addition, kl, max_kl=0.1, max_layer=3) == ((0, 1), "filters: layer < 3, KL <= 0.1, addition score > 0")
    (index, text) = select(ablation, torch.full_like(addition, -1.0), kl, max_kl=0.1, max_layer=3)
    assert index == (0, 2) and "no candidate passed addition score > 0" in text


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_hook_ablation_equals_orthogonalised_weights(tiny_model_dirs, tmp_path, arch):
    model = fresh(tiny_model_dirs, arch)
    direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    hooked, weights = ablated_both_ways(model, direction)
    difference = (hooked - weights).abs().max().item()
    assert difference <= HOOK_VS_WEIGHTS_TOL, f"{arch}: hook ablation vs orthogonalised weights differ by {difference:.2e}"
    saved = load_model(save_orthogonalized(model, direction, tmp_path / "ortho"), device="cpu")
    with torch.no_grad():
        reloaded = (saved(TOKENS) - hooked).abs().max().item()
    assert reloaded <= HOOK_VS_WEIGHTS_TOL, f"{arch}: the saved orthogonalised model differs from hook ablation by {reloaded:.2e}"


def test_qwen2_biases_and_untied_head_through_orthogonalisation(tiny_model_dirs, tmp_path):
    """Qwen2 (q/k/v biases, lm_head apart from the embedding) in float64: the embedding loses the direction, the
    unembedding and the q/k/v projections (which read the stream, not write it) keep theirs, hook ablation equals
    the edited weights, everything is restored bit-exactly, and the saved model reloads to the same logits."""
    model = load_model(tiny_model_dirs["qwen2"], device="cpu", dtype=torch.float64)
    embed, unembed = model.embed.original_component, model.unembed.original_component
    assert embed.weight is not unembed.weight and not torch.equal(embed.weight, unembed.weight), "the tiny qwen2 must have an untied lm_head"
    kept = {name: param.detach().clone() for name, param in hf_parameters(model).items() if name == "lm_head.weight" or name.split(".")[-2] in ("q_proj", "k_proj", "v_proj")}
    assert len(kept) == 1 + 6 * model.cfg.n_layers, sorted(kept)
    assert all(param.abs().min() > 0 for name, param in kept.items() if name.endswith("bias")), "the q/k/v biases must be non-zero here"
    direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    unit = direction / direction.norm()

    def edited_as_it_should_be() -> None:
        assert float((embed.weight @ unit).abs().max()) <= ORTHOGONAL_TOL, "the embedding still writes along the direction"
        assert float((unembed.weight @ unit).abs().max()) > 1e-3, "the unembedding lost the direction it reads"
        now = hf_parameters(model)
        assert all(torch.equal(now[name], kept[name]) for name in kept), "lm_head or a q/k/v projection was edited"

    hooked, weights = ablated_both_ways(model, direction, inside=edited_as_it_should_be)
    difference = (hooked - weights).abs().max().item()
    assert difference <= ORTHOGONAL_TOL, f"qwen2: hook ablation vs orthogonalised weights differ by {difference:.2e}"
    saved = load_model(save_orthogonalized(model, direction, tmp_path / "ortho"), device="cpu", dtype=torch.float64)
    assert saved.unembed.original_component.weight is not saved.embed.original_component.weight
    with torch.no_grad():
        reloaded = (saved(TOKENS) - weights).abs().max().item()
    assert reloaded <= ORTHOGONAL_TOL, f"qwen2: the saved orthogonalised model differs from the in-place one by {reloaded:.2e}"


def test_restore_after_in_place_orthogonalisation_is_bit_exact(tiny_model_dirs):
    model = fresh(tiny_model_dirs, "llama")
    before = {name: param.detach().clone() for name, param in model.state_dict().items()}
    handle = orthogonalize(model, torch.ones(model.cfg.d_model))
    edited = model.state_dict()
    assert any(not torch.equal(edited[name], before[name]) for name in before)
    handle.restore()
    handle.restore()  # twice is harmless
    restored = model.state_dict()
    assert all(torch.equal(restored[name], before[name]) for name in before)


def test_result_round_trips_and_draws_its_figure(found, tmp_path):
    found.save(tmp_path / "r")
    loaded = DirectionResult.load(tmp_path / "r")
    assert torch.equal(loaded.directions, found.directions) and loaded.selection == found.selection
    assert torch.allclose(loaded.ablation_score, found.ablation_score, equal_nan=True)
    direction = RefusalDirection.load(tmp_path / "r" / "direction.safetensors")
    assert torch.equal(direction.vector, found.direction.vector) and direction.layer == found.chosen_layer
    figure = found.figure()
    heatmaps = [trace for trace in figure.data if trace.type == "heatmap"]
    assert len(heatmaps) == 3 and list(heatmaps[0].y) == list(found.position_labels)
    assert list(heatmaps[0].x) == [f"L{layer}" for layer in range(found.n_layers)]
    assert "ablation score (harmful)" in heatmaps[0].text[0][1] and "KL" in heatmaps[0].text[0][1]


# ---- bad input: one line, naming the fix ----


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, f"not one line: {message!r}"
    return message


def test_direction_of_the_wrong_width(llama):
    with pytest.raises(InterpError) as error:
        with ablated(llama, torch.ones(llama.cfg.d_model + 1)):
            pass
    assert "d_model" in one_line(error) and "find" in str(error.value)


def test_direction_from_another_model(found, tiny_model_dirs):
    other = fresh(tiny_model_dirs, "qwen2")
    vector = torch.ones(other.cfg.d_model)
    foreign = RefusalDirection(vector, found.direction.layer, found.direction.position, provenance=found.provenance)
    for use in (lambda: ablated(other, foreign).__enter__(), lambda: orthogonalize(other, foreign)):
        with pytest.raises(InterpError) as error:
            use()
        assert "found on model" in one_line(error) and "interp direction find" in str(error.value)
        assert repr(found.provenance.model_id) in str(error.value) and repr(model_id(other)) in str(error.value), "both models are named"
    narrower = RefusalDirection(torch.ones(other.cfg.d_model - 8), 1, -1, provenance=found.provenance)  # another model's width
    with pytest.raises(InterpError) as error:
        ablated(other, narrower).__enter__()
    assert repr(found.provenance.model_id) in one_line(error) and repr(model_id(other)) in str(error.value), "both models are named"


def test_single_class_labels():
    prompts = PromptSet.from_texts(HARMFUL, labels=["harmful"] * len(HARMFUL))
    with pytest.raises(InterpError) as error:
        split_by_label(prompts)
    assert "two classes" in one_line(error) and "other class" in str(error.value)


def test_no_benign_prompts(llama):
    with pytest.raises(InterpError) as error:
        find_directions(llama, HARMFUL, [], chat_template=False)
    assert "both classes" in one_line(error)


def test_prompt_file_without_the_expected_fields(tmp_path):
    path = tmp_path / "behaviours.csv"
    path.write_text("behaviour_text,target\nDo something,Sure\n")
    with pytest.raises(InterpError) as error:
        read_instructions(path, label="harmful")
    message = one_line(error)
    assert "behaviour_text, target" in message and "column=" in message
    with pytest.raises(InterpError) as error:
        read_instructions(path, label="harmful", column="goal")
    assert "'goal'" in one_line(error)
    jsonl = tmp_path / "benign.jsonl"
    jsonl.write_text('{"request": "bake bread"}\n')
    with pytest.raises(InterpError) as error:
        read_instructions(jsonl, label="benign")
    assert "request" in one_line(error)


def test_no_chat_template_is_named(llama):
    with pytest.raises(InterpError) as error:
        find_directions(llama, HARMFUL, BENIGN)
    assert "chat_template=False" in one_line(error)


# ---- command line ----


def test_cli_defaults_are_the_library_defaults():
    args = build_parser().parse_args(["direction", "find", "--harmful", "h", "--benign", "b", "--out", "o"])
    parameters = inspect.signature(find_directions).parameters
    assert args.max_kl == MAX_KL == parameters["max_kl"].default
    assert args.max_layer_fraction == MAX_LAYER_FRACTION == parameters["max_layer_fraction"].default
    assert tuple(args.refusal_starts.split(",")) == REFUSAL_STARTS == parameters["refusal_starts"].default
    assert args.batch_size == parameters["batch_size"].default


def test_cli_find_then_orthogonalize(tiny_model_dirs, tmp_path, capsys):
    harmful, benign = tmp_path / "harmful.csv", tmp_path / "benign.jsonl"
    harmful.write_text("goal,target\n" + "".join(f"{text},Sure\n" for text in HARMFUL))
    benign.write_text("".join(f'{{"prompt": "{text}", "split": "{"heldout" if i % 4 == 3 else "train"}"}}\n' for i, text in enumerate(BENIGN)))
    model = str(tiny_model_dirs["llama"])
    assert main(["direction", "find", "--model", model, "--device", "cpu", "--harmful", str(harmful), "--benign", str(benign),
                 "--no-chat-template", "--positions", "-1", "--out", str(tmp_path / "found")]) == 0  # fmt: skip
    assert "chosen: layer" in capsys.readouterr().out
    result = DirectionResult.load(tmp_path / "found")
    assert result.counts == {"harmful": 6, "benign": 6, "val_harmful": 2, "val_benign": 2}
    assert main(["direction", "orthogonalize", "--model", model, "--device", "cpu", "--direction", str(tmp_path / "found"),
                 "--out", str(tmp_path / "ortho")]) == 0  # fmt: skip
    original, saved = load_model(model, device="cpu"), load_model(tmp_path / "ortho", device="cpu")
    with torch.no_grad():
        with ablated(original, result.direction):
            expected = original(TOKENS)
        assert (saved(TOKENS) - expected).abs().max().item() <= HOOK_VS_WEIGHTS_TOL
    assert main(["direction", "find", "--model", model, "--device", "cpu", "--harmful", str(benign), "--benign", str(benign),
                 "--harmful-column", "goal", "--out", str(tmp_path / "bad")]) == 2  # fmt: skip
    assert "no column 'goal'" in capsys.readouterr().err


def test_instruction_files_split_lines_like_prompt_files(tmp_path):
    """U+2028 inside a JSONL string is text, and a quoted CSV field keeps its line break (interp.data.read_records)."""
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"prompt": "bake\\u2028bread", "split": "heldout"}\n{"prompt": "plant beans"}\n', encoding="utf-8")
    prompts = read_instructions(jsonl, label="benign")
    assert prompts.texts == ["bake\u2028bread", "plant beans"] and prompts[0]["split"] == "heldout"
    csv = tmp_path / "h.csv"
    csv.write_text('goal,target\n"Do X\nthen Y",Sure\n', encoding="utf-8")
    assert read_instructions(csv, label="harmful").texts == ["Do X\nthen Y"]
