"""The in-place KV cache of rollouts against transformers' own DynamicLayer, operation by operation."""

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from interp.resampling.kv_cache import RoomyLayer, roomy_cache


def _states(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, length, 4, generator=generator), torch.randn(batch, 2, length, 6, generator=generator)


def _same(ours: RoomyLayer, reference: DynamicLayer, step: str) -> None:
    assert ours.get_seq_length() == reference.get_seq_length(), step
    assert torch.equal(ours.keys, reference.keys) and torch.equal(ours.values, reference.values), f"{step}: cache differs"


def test_every_operation_leaves_what_transformers_leaves():
    ours, reference = RoomyLayer(capacity=12), DynamicLayer()
    seed = 0
    for step, batch in (("prefill", 2), ("repeat", 0), ("decode", 6), ("decode", 6), ("crop", 0), ("decode", 6),
                        ("select", 0), ("decode", 3), ("reorder", 0), ("decode", 3), ("past capacity", 3)):
        if step in ("repeat", "crop", "select", "reorder"):
            for layer in (ours, reference):
                {"repeat": lambda: layer.batch_repeat_interleave(3), "crop": lambda: layer.crop(-2),
                 "select": lambda: layer.batch_select_indices(torch.tensor([0, 2, 5])),
                 "reorder": lambda: layer.reorder_cache(torch.tensor([2, 0, 1]))}[step]()
        else:
            seed += 1
            keys, values = _states(batch, {"prefill": 5, "past capacity": 9}.get(step, 1), seed)
            out, expected = ours.update(keys, values), reference.update(keys, values)
            assert all(torch.equal(a, b) for a, b in zip(out, expected)), f"{step}: update returned other states"
        _same(ours, reference, step)


def test_decoding_writes_in_place():
    """One buffer from the repeated prefix to the last token: nothing is concatenated or copied per step."""
    layer = RoomyLayer(capacity=5 + 8)
    layer.update(*_states(1, 5, 0))
    layer.batch_repeat_interleave(4)
    start = layer.keys.data_ptr()
    for step in range(8):
        layer.update(*_states(4, 1, step + 1))
        assert layer.keys.data_ptr() == start and layer.values.data_ptr() == layer._room[1].data_ptr(), f"step {step}: reallocated"
    assert layer.get_seq_length() == 13


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma2"])
def test_the_rollout_cache_is_roomy_where_attention_is_full(tiny_model_dirs, name):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dirs[name])
    cache = roomy_cache(config, 40, 24)
    kinds = [type(layer) for layer in cache.layers]
    assert len(kinds) == config.num_hidden_layers
    sliding = [k for k in kinds if getattr(k, "is_sliding", False)]
    assert kinds.count(RoomyLayer) == len(kinds) - len(sliding) > 0, f"{name}: {kinds}"


def test_the_room_doubles_up_to_the_longest_rollout():
    layer, reference = RoomyLayer(capacity=4, limit=10), DynamicLayer()
    sizes = []
    for step in range(12):
        keys, values = _states(2, 1, step)
        layer.update(keys, values)
        reference.update(keys, values)
        _same(layer, reference, f"token {step}")
        sizes.append(layer._room[0].shape[-2])
    assert sizes == [4, 4, 4, 4, 8, 8, 8, 8, 10, 10, 11, 12]  # past the limit only what is written
