"""Manual ``prune()`` handles restored out of order: overlapping ones are refused, disjoint ones are fine."""

import pytest
import torch

from interp.errors import InterpError
from interp.pruning import PruningMask, prune
from interp.pruning.weights import decoder_weights


def _masks(model):
    weight = decoder_weights(model)[0]
    shape = tuple(weight.weight.shape)
    first, second, disjoint = (torch.zeros(shape, dtype=torch.bool) for _ in range(3))
    first[0, :4], second[0, 2:6], disjoint[1, :4] = True, True, True  # first and second share [0, 2:4]
    return weight, *(PruningMask({weight.key: mask}) for mask in (first, second, disjoint))


def test_restoring_overlapping_prunes_in_the_wrong_order_is_refused_and_changes_nothing(load_tiny):
    model = load_tiny("llama")
    weight, first, second, _ = _masks(model)
    original = weight.weight.detach().clone()
    older, newer = prune(model, first), prune(model, second)
    pruned_values = weight.weight.detach().clone()
    with pytest.raises(InterpError, match="Restore the later prune first"):
        older.restore()
    assert torch.equal(weight.weight, pruned_values), "a refused restore writes nothing"
    newer.restore()
    older.restore()
    assert torch.equal(weight.weight, original), "in the right order the weights come back bit-exactly"


def test_disjoint_prunes_restore_in_any_order(load_tiny):
    model = load_tiny("llama")
    weight, first, _, disjoint = _masks(model)
    original = weight.weight.detach().clone()
    older, newer = prune(model, first), prune(model, disjoint)
    older.restore()
    newer.restore()
    assert torch.equal(weight.weight, original)
