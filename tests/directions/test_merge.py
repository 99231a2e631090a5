"""A sweep run in parts (a few candidates per call, each saved) merges into the result of one run over every layer."""

import dataclasses

import pytest
import torch

from interp.directions import find_directions, merge_scores
from interp.errors import InterpError
from interp.models import load_model

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
