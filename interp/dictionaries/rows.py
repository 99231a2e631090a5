"""Training rows: every real token's activation in a store cached at all positions, shuffled across shards.

A store cached with ``positions="all"`` holds ``[prompt, pos, d]`` per site, right-padded. The rows a
dictionary trains on are the real tokens only: positions before each prompt's length, optionally
without its first ``skip_first`` tokens (a BOS token's activation is an outlier that dictionaries waste
latents on) and without special tokens (chat-template markers). The order is shuffled across shards and
reproducible: each pass ("epoch") permutes the shards with its own seed, groups them into windows of
about ``window_bytes``, and permutes each window's rows; a window yields whole batches only (its remainder,
less than one batch, is left out of that pass). The batch at a given step is a function of the seed alone,
so a resumed run sees exactly the batches an uninterrupted one would.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from interp.errors import InterpError

DEFAULT_WINDOW_BYTES = 256 * 2**20  # rows held in memory at once, per window of shards


@dataclass(frozen=True)
class Window:
    """Some shards (by index) and how many rows they hold."""

    shards: tuple[int, ...]
    n_rows: int


class TrainingRows:
    """The rows of ``sites`` (one for an autoencoder, input and output for a transcoder) of a store or of tensors.

    ``source``: an ``ActivationStore`` cached at every position, or a tensor ``[rows, d]`` (one per site) for
    rows held in memory (a planted test, a small experiment).
    """

    def __init__(
        self,
        source,
        sites: Sequence[str],
        skip_first: int = 1,
        exclude_special: bool = True,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
    ):
        self.sites = tuple(sites)
        self.window_bytes = int(window_bytes)
        if isinstance(source, Tensor) or (
            isinstance(source, (tuple, list)) and all(isinstance(t, Tensor) for t in source)
        ):
            tensors = (source,) if isinstance(source, Tensor) else tuple(source)
            self._init_tensors(tensors)
        else:
            self._init_store(source, skip_first, exclude_special)

    # ---- sources ------------------------------------------------------------------------------------------
    def _init_tensors(self, tensors: tuple[Tensor, ...]) -> None:
        if len(tensors) != len(self.sites):
            raise InterpError(f"give one tensor of rows per site ({len(self.sites)}), got {len(tensors)}.")
        for tensor in tensors:
            if tensor.ndim != 2 or tensor.shape[0] != tensors[0].shape[0]:
                raise InterpError(
                    "rows must be [rows, d] tensors with the same number of rows, got "
                    f"{[tuple(t.shape) for t in tensors]}."
                )
            _check_finite(tensor, "the rows")
        self.store: Any = None
        self.widths = tuple(int(t.shape[1]) for t in tensors)
        self._tensors = tensors
        self._shard_rows: tuple[int, ...] = (int(tensors[0].shape[0]),)
        self._masks: tuple[Tensor, ...] = ()

    def _init_store(self, store, skip_first: int, exclude_special: bool) -> None:
        from interp.store import ActivationStore

        if not isinstance(store, ActivationStore):
            raise InterpError(f"train from an ActivationStore or from [rows, d] tensors, got {type(store).__name__}.")
        if store.positions != "all":
            raise InterpError(
                f"the store at {store.root} holds positions {store.positions!r} only; a dictionary trains on every "
                "token: cache with --positions all (positions='all')."
            )
        for site in self.sites:
            if site not in store:
                raise InterpError(
                    f"the store at {store.root} has no {site}; cache it (interp cache --hooks ... --positions all)."
                )
        self.store = store
        self.widths = tuple(int(store.shape(site)[-1]) for site in self.sites)
        lengths, ids = store.lengths, store.input_ids
        positions = torch.arange(ids.shape[1])
        valid = (positions[None, :] < lengths[:, None]) & (positions[None, :] >= skip_first)
        if exclude_special:
            special = _special_ids(store)
            if special:
                valid &= ~torch.isin(ids, torch.tensor(sorted(special)))
        self._masks = tuple(valid[start:stop] for start, stop in store.shard_ranges)
        self._shard_rows = tuple(int(mask.sum()) for mask in self._masks)
        if not sum(self._shard_rows):
            raise InterpError(
                f"the store at {store.root} holds no token to train on once padding, the first "
                f"{skip_first} tokens and special tokens are left out."
            )

    # ---- the stream ---------------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return sum(self._shard_rows)

    def windows(self, epoch: int, seed: int) -> list[Window]:
        """The windows of one pass, in order (the shards permuted by ``(seed, epoch)``)."""
        order = torch.randperm(len(self._shard_rows), generator=_generator(seed, epoch, -1)).tolist()
        row_bytes = 4 * sum(self.widths)
        windows, current, rows = [], [], 0
        for index in order:
            current.append(index)
            rows += self._shard_rows[index]
            if rows * row_bytes >= self.window_bytes:
                windows.append(Window(tuple(current), rows))
                current, rows = [], 0
        if current:
            windows.append(Window(tuple(current), rows))
        return windows

    def batches(self, batch_size: int, seed: int, start_step: int = 0) -> Iterator[tuple[Tensor, ...]]:
        """Shuffled batches ``(x,)`` or ``(x, y)``, forever, from step ``start_step`` on (reading what it yields)."""
        if batch_size < 1:
            raise InterpError(f"batch_size must be at least 1, got {batch_size}.")
        if max(window.n_rows for window in self.windows(0, seed)) < batch_size and self.n_rows < batch_size:
            raise InterpError(f"there are {self.n_rows} rows to train on, fewer than one batch ({batch_size}).")
        step, epoch = 0, 0
        while True:
            for number, window in enumerate(self.windows(epoch, seed)):
                n_batches = window.n_rows // batch_size
                if step + n_batches <= start_step:  # consumed before the resume: skipped unread
                    step += n_batches
                    continue
                rows = self._load(window)
                order = torch.randperm(window.n_rows, generator=_generator(seed, epoch, number))
                for batch in range(n_batches):
                    if step >= start_step:
                        picked = order[batch * batch_size : (batch + 1) * batch_size]
                        yield tuple(part[picked] for part in rows)
                    step += 1
            epoch += 1

    def _load(self, window: Window) -> tuple[Tensor, ...]:
        if self.store is None:
            return self._tensors
        parts = []
        for site in self.sites:
            pieces = [self._shard_site(index, site) for index in window.shards]
            parts.append(torch.cat(pieces).float())
        return tuple(parts)

    def _shard_site(self, index: int, site: str) -> Tensor:
        assert self.store is not None
        values = self.store.read_shard(index, site)[self._masks[index]]
        _check_finite(values, f"the activations of {site} in shard {index} of {self.store.root}")
        return values


def _special_ids(store) -> set[int]:
    try:
        return set(getattr(store.tokenizer, "all_special_ids", ()) or ())
    except InterpError:  # a store without its tokenizer: nothing known to be special
        return set()


def _generator(seed: int, epoch: int, window: int) -> torch.Generator:
    """A generator of its own for each (seed, pass, window): the shard order is window -1."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) * 100_003 + int(window) + 1)


def _check_finite(values: Tensor, what: str) -> None:
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        raise InterpError(f"{what} hold NaN or inf values; a dictionary cannot be trained on them.")
