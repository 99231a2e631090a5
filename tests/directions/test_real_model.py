"""SmolLM2-135M-Instruct: harm is linearly readable from h_last (and not from its embedding), and the refusal
direction's hook ablation equals the orthogonalised weights, in place (restored bit-exactly) and saved."""

import random

import pytest
import torch

from conftest import ADVBENCH
from interp.data import PromptSet
from interp.directions import ablated, chat_format, orthogonalized, read_instructions, save_orthogonalized
from interp.model import load_model
from interp.probes import train_probes
from interp.store import capture_activations

BENIGN = "assets/prompts/benign_instructions.jsonl"
HOOK_VS_WEIGHTS_TOL = 1e-4  # max |logit difference|
# The identity is checked in float64: in float32 the two paths round differently, by about 1e-4 on logits
# of size ~20, and by how much depends on the CPU's kernels (1.02e-4 on one machine, below 1e-4 on another).


def instructions(n: int, seed: int = 0) -> PromptSet:
    harmful, benign = read_instructions(ADVBENCH, label="harmful"), read_instructions(BENIGN, label="benign")
    picked = []
    for prompts in (harmful, benign):
        rows = list(range(len(prompts)))
        random.Random(seed).shuffle(rows)
        picked += [prompts[i] for i in rows[:n]]
    return PromptSet(tuple(picked), "advbench + benign")


def test_harm_is_readable_from_h_last_and_not_from_its_embedding(smollm2):
    torch.set_num_threads(2)
    prompts = chat_format(smollm2.tokenizer, instructions(64))
    hooks = ["hook_embed"] + [f"blocks.{layer}.hook_resid_post" for layer in range(smollm2.cfg.n_layers)]
    acts = capture_activations(smollm2, prompts, hooks=hooks, positions="last", dtype=torch.float32)
    probe = train_probes(torch.stack([acts[h] for h in hooks]), prompts.labels, hooks=hooks, texts=prompts.texts, progress=False)
    best = float(probe.holdout_auroc[1:].max())
    embedding = float(probe.holdout_auroc[0])
    assert best >= 0.95, f"best-layer held-out AUROC {best:.3f} < 0.95:\n{probe.summary()}"
    assert embedding <= 0.6 and best - embedding >= 0.3, f"embedding baseline {embedding:.3f} vs best {best:.3f}"


@pytest.fixture
def smollm2_float64(smollm2):
    model = load_model("smollm2-135m-instruct", device="cpu")
    model.to(torch.float64)
    return model


def test_hook_ablation_equals_orthogonalised_weights_on_the_real_model(smollm2_float64, tmp_path):
    torch.set_num_threads(2)
    smollm2 = smollm2_float64
    prompts = chat_format(smollm2.tokenizer, instructions(6))
    hook = "blocks.12.hook_resid_pre"
    acts = capture_activations(smollm2, prompts, hooks=[hook], positions="last", dtype=torch.float32)[hook].double()
    labels = torch.tensor([label == "harmful" for label in prompts.labels])
    direction = acts[labels].mean(0) - acts[~labels].mean(0)
    tokens = smollm2.to_tokens(prompts.texts[:1] + prompts.texts[-1:], prepend_bos=False)
    embed, unembed = smollm2.embed.original_component, smollm2.unembed.original_component
    assert embed.weight is unembed.weight, "SmolLM2 ties its embeddings: the test relies on it"
    before = {name: param.detach().clone() for name, param in smollm2.named_parameters()}
    with torch.no_grad():
        with ablated(smollm2, direction):
            hooked = smollm2(tokens)
        with orthogonalized(smollm2, direction):
            assert embed.weight is not unembed.weight
            weights = smollm2(tokens)
        plain = smollm2(tokens)
    difference = (hooked - weights).abs().max().item()
    assert difference <= HOOK_VS_WEIGHTS_TOL, f"hook ablation vs orthogonalised weights: max |logit difference| {difference:.2e}"
    assert (hooked - plain).abs().max().item() > 1e-2, "the ablation changed nothing"
    assert embed.weight is unembed.weight, "the tie was not restored"
    for name, param in smollm2.named_parameters():
        assert torch.equal(param, before[name]), f"{name} not restored bit-exactly"
    saved = load_model(save_orthogonalized(smollm2, direction, tmp_path / "ortho"), device="cpu")
    saved.to(torch.float64)
    with torch.no_grad():
        reloaded = (saved(tokens) - hooked).abs().max().item()
    assert reloaded <= HOOK_VS_WEIGHTS_TOL, f"the saved orthogonalised model vs hook ablation: max |logit difference| {reloaded:.2e}"
