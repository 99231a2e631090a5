"""The KV cache of a shared prefix, repeated for N samples, that new tokens are written into in place.

transformers' ``DynamicLayer`` concatenates every step (``torch.cat`` of the whole cache, per layer,
keys and values): with N copies of a long prefix that is a fresh allocation of N x context per
layer and step. On 2 CPU cores it took half of the decode time of a GPT-2-small-shaped model at
N = 32 (``bench/resampling.py``). :class:`RoomyLayer` holds the cache in a buffer with spare room
(doubled when full, never past the longest rollout) and hands attention views of its filled part;
the values, and so the samples, are the same.
"""

import einops
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class RoomyLayer(DynamicLayer):
    """A ``DynamicLayer`` that writes new keys and values into spare room instead of concatenating.

    Args:
        capacity: positions to make room for at first.
        limit: the most positions a rollout can reach (prefix + max new tokens); the room doubles when
            full, up to this (or beyond, if something writes more).
    """

    def __init__(self, capacity: int, limit: int | None = None):
        super().__init__()
        self.capacity, self.limit = capacity, limit
        self._room: tuple[torch.Tensor, torch.Tensor] | None = None

    def _grown(self, needed: int) -> int:
        """The room to make for ``needed`` positions: at least ``capacity``, twice the cache so far, within
        ``limit``."""
        size = max(self.capacity, 2 * self.get_seq_length())
        return max(needed, min(size, self.limit) if self.limit else size)

    def _fits(self, key_states: torch.Tensor, length: int, needed: int) -> bool:
        """Whether the room takes ``needed`` positions of these states and ``keys`` is still its start (a
        base-class method such as beam reordering or ``offload`` may have put a new tensor there)."""
        if self._room is None:
            return False
        room = self._room[0]
        same = (room.shape[:2], room.shape[-1], room.dtype, room.device) == (
            key_states.shape[:2],
            key_states.shape[-1],
            key_states.dtype,
            key_states.device,
        )
        keys = self.keys  # holds the filled part whenever length > 0
        in_place = length == 0 or (
            keys is not None and keys.data_ptr() == room.data_ptr() and keys.stride() == room.stride()
        )
        return same and in_place and needed <= room.shape[-2]

    def _allocate(
        self, keys_like: torch.Tensor, values_like: torch.Tensor, batch: int, capacity: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = (t.new_empty(batch, t.shape[1], capacity, t.shape[-1]) for t in (keys_like, values_like))
        self._room = (keys, values)
        return self._room

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        needed = length + key_states.shape[-2]
        room = self._room
        if room is None or not self._fits(key_states, length, needed):
            old = (self.keys, self.values)
            room = self._allocate(key_states, value_states, key_states.shape[0], self._grown(needed))
            if length:
                for part, filled in zip(room, old):
                    assert filled is not None  # a layer holding positions holds their keys and values
                    part[:, :, :length] = filled
        keys, values = room
        keys[:, :, length:needed] = key_states
        values[:, :, length:needed] = value_states
        self.keys, self.values = keys[:, :, :needed], values[:, :, :needed]
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Each sample ``repeats`` times, written straight into a room for the larger batch (one copy)."""
        length = self.get_seq_length()
        if length == 0:
            return
        keys, values = self.keys, self.values
        assert keys is not None and values is not None  # a layer holding positions holds their keys and values
        rooms = self._allocate(keys, values, keys.shape[0] * repeats, max(self.capacity, length))
        for room, filled in zip(rooms, (keys, values)):
            grouped = einops.rearrange(room, "(batch repeat) head pos d -> batch repeat head pos d", repeat=repeats)
            grouped[:, :, :, :length] = einops.rearrange(filled, "batch head pos d -> batch 1 head pos d")
        self.keys, self.values = (room[:, :, :length] for room in rooms)


def roomy_cache(config, prefix: int, max_new_tokens: int) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose full-attention layers are :class:`RoomyLayer`, with room for the
    prefix and up to 256 new tokens at first (sliding-window layers stay as transformers makes them)."""
    cache = DynamicCache(config=config)
    start, limit = prefix + min(max_new_tokens, 256), prefix + max_new_tokens
    cache.layers = [RoomyLayer(start, limit) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
