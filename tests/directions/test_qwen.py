"""Qwen2.5-Coder-0.5B-Instruct, a real chat model that refuses: the refusal direction of its finding
(``circuits/refusal_direction_qwen``) found again at a small size does what the finding says, and its hook
ablation equals the orthogonalised weights (float64) on this model's untied output and q/k/v biases."""

import json
from pathlib import Path

import pytest
import torch

from interp.data import PromptSet, tokenize_prompts
from interp.demo.alignment import prompt_sets
from interp.directions import ablated, added, chat_format, find_directions, orthogonalized
from interp.directions.find import last_log_probs
from interp.model import load_model

ROOT = Path(__file__).resolve().parents[2]
FINDING = json.loads((ROOT / "circuits" / "refusal_direction_qwen" / "results.json").read_text())
HOOK_VS_WEIGHTS_TOL = 1e-4  # max |log-prob difference|, float64 (the finding measured it on the chosen direction)
N_TRAIN, N_VAL = 16, 6


def small_sets() -> dict[str, PromptSet]:
    """The finding's sets (``prompt_sets(64, 16, 32, seed=1)``) at a small size: its first 16 training and 6 scoring prompts."""
    full = prompt_sets(64, 16, 32, seed=1)
    return {name: full[name].select(range(N_TRAIN if name in ("harmful", "benign") else N_VAL)) for name in ("harmful", "benign", "val_harmful", "val_benign")}


@pytest.fixture(scope="module")
def small_result(qwen):
    torch.set_num_threads(2)
    chosen = FINDING["evaluations"]["chosen"]  # "L{layer}_{position}"
    position = int(chosen["direction"].split("_")[1])
    return find_directions(qwen, **small_sets(), candidates=[(position, chosen["layer"])], progress=False)


def test_the_chosen_direction_found_again_at_a_small_size_gates_refusal(qwen, small_result):
    """Ablating it lowers the harmful prompts' refusal score, adding it raises the benign prompts' (measured at this size:
    -0.13 -> -1.27 and -3.15 -> +0.11, KL 0.15), and a random direction of the same norm does neither."""
    from interp.directions import refusal_scores, refusal_token_ids

    r = small_result
    p, layer = r.chosen_position, r.chosen_layer
    ablation, addition, kl = (float(getattr(r, name)[p, layer]) for name in ("ablation_score", "addition_score", "kl"))
    assert ablation < r.baseline_harmful - 0.8, f"ablated {ablation:.2f} vs baseline {r.baseline_harmful:.2f} on harmful prompts"
    assert addition > r.baseline_benign + 2.0, f"added {addition:.2f} vs baseline {r.baseline_benign:.2f} on benign prompts"
    assert kl < 0.5, f"KL on benign prompts under ablation {kl:.3f}"
    sets, ids = small_sets(), refusal_token_ids(qwen.tokenizer, r.refusal_tokens)[0]
    harmful, benign = (tokenize_prompts(qwen, chat_format(qwen.tokenizer, sets[name])) for name in ("val_harmful", "val_benign"))
    control = torch.randn(qwen.cfg.d_model, generator=torch.Generator().manual_seed(0))
    control = control * r.direction.vector.norm() / control.norm()
    with ablated(qwen, control):
        control_ablation = float(refusal_scores(last_log_probs(qwen, harmful, 6), ids).mean())
    with added(qwen, control, layer=layer):
        control_addition = float(refusal_scores(last_log_probs(qwen, benign, 6), ids).mean())
    assert abs(control_ablation - r.baseline_harmful) < 0.4 and control_addition < r.baseline_benign + 1.0, (
        f"a random direction moved the scores too: ablated {control_ablation:.2f}, added {control_addition:.2f}")


def test_hook_ablation_equals_orthogonalised_weights_on_qwen_in_float64(small_result):
    model = load_model("qwen2.5-coder-0.5b-instruct", device="cpu")
    model.to(torch.float64)
    embed, unembed = model.embed.original_component, model.unembed.original_component
    assert embed.weight is not unembed.weight, "Qwen2.5's output matrix is untied: the test relies on it"
    sets = small_sets()
    prompts = chat_format(model.tokenizer, PromptSet(sets["val_harmful"].records[:1] + sets["val_benign"].records[:1]))
    tokens = tokenize_prompts(model, prompts)
    direction = small_result.direction.vector.double()
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    with ablated(model, direction):
        hooked = last_log_probs(model, tokens, 2)
    with orthogonalized(model, direction):
        weights = last_log_probs(model, tokens, 2)
    plain = last_log_probs(model, tokens, 2)
    difference = float((hooked - weights).abs().max())
    assert difference <= HOOK_VS_WEIGHTS_TOL, f"hook ablation vs orthogonalised weights: max |log-prob difference| {difference:.2e}"
    assert float((hooked - plain).abs().max()) > 1e-2, "the ablation changed nothing"
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), f"{name} not restored bit-exactly"


def test_the_committed_direction_is_the_findings_and_gates_refusal(qwen):
    """circuits/refusal_direction_qwen/direction.safetensors: the chosen candidate, for this model, and it works as saved."""
    from interp.directions import RefusalDirection, refusal_scores, refusal_token_ids

    direction = RefusalDirection.load(ROOT / "circuits" / "refusal_direction_qwen" / "direction.safetensors")
    assert f"L{direction.layer}_{direction.position}" == FINDING["evaluations"]["chosen"]["direction"]
    assert direction.provenance.model_id == "qwen2.5-coder-0.5b-instruct"
    sets, ids = small_sets(), refusal_token_ids(qwen.tokenizer, ("I", "Sorry", "As"))[0]
    harmful = tokenize_prompts(qwen, chat_format(qwen.tokenizer, sets["val_harmful"]))
    before = float(refusal_scores(last_log_probs(qwen, harmful, 6), ids).mean())
    with ablated(qwen, direction):  # also checks that the direction belongs to this model's weights
        after = float(refusal_scores(last_log_probs(qwen, harmful, 6), ids).mean())
    assert after < before - 1.0, f"refusal score {before:.2f} -> {after:.2f} with the committed direction ablated"
