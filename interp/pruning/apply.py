"""Zero the weights of a mask, and put them back bit-exactly.

>>> with pruned(model, mask):            # doctest: +SKIP
...     logits = model(tokens)            # weights restored on exit, also after an exception
>>> handle = prune(model, mask)          # stays pruned ...    # doctest: +SKIP
>>> handle.restore()                     # ... until restored  # doctest: +SKIP
"""

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError
from interp.pruning.masks import PruningMask
from interp.pruning.scores import check_keys_match
from interp.pruning.weights import DecoderWeight, decoder_weights


@dataclass
class PrunedWeights:
    """The values a ``prune`` call overwrote, so that ``restore()`` can write them back exactly."""

    saved: list[tuple[DecoderWeight, Tensor, Float[Tensor, " n"]]]  # (weight, mask, original values)
    mask: PruningMask
    restored: bool = False
    active: list["PrunedWeights"] = field(
        default_factory=list, repr=False
    )  # the model's unrestored prunes, oldest first

    def restore(self) -> None:
        """Write the original values back (in reverse order, so nested prunes unwind correctly).

        Raises ``InterpError`` if a later, still-active prune of the same model zeroed some of the same
        weights: it saved them as zeros, so restoring this one first would leave them zero. Restore the
        later one first (``pruned(...)`` blocks always unwind in that order).
        """
        if self.restored:
            return
        later = self.active[self.active.index(self) + 1 :] if self in self.active else []
        for other in later:
            shared = _overlap(self.mask, other.mask)
            if shared:
                raise InterpError(
                    f"cannot restore this prune before a later one that zeroed some of the same weights ({shared}): "
                    "that one saved them as zeros. Restore the later prune first "
                    "(the last prune() first), then this one."
                )
        with torch.no_grad():
            for weight, mask, values in reversed(self.saved):
                weight.weight.masked_scatter_(mask, values)
        self.restored = True
        if self in self.active:
            self.active.remove(self)


def _overlap(a: PruningMask, b: PruningMask) -> str:
    """The first weight both masks zero (its key), or ``""``."""
    for key in set(a.keys) & set(b.keys):
        if (a[key] & b[key].to(a[key].device)).any():
            return key
    return ""


_ACTIVE: "weakref.WeakKeyDictionary[object, list[PrunedWeights]]" = weakref.WeakKeyDictionary()


def prune(model, mask: PruningMask) -> PrunedWeights:
    """Zero the masked weights of ``model`` in place; they stay zero until ``.restore()`` on the result.

    Raises when the mask names weights the model does not have or has other shapes.
    """
    check_keys_match(mask.keys, {key: tuple(mask[key].shape) for key in mask.keys}, model, what="the mask")
    table = {weight.key: weight for weight in decoder_weights(model)}
    for key in mask.keys:
        if table[key].parameter.is_inference():
            raise InterpError(
                f"{key} is an inference-mode tensor and cannot be pruned in place; "
                "load the model outside torch.inference_mode()."
            )
    handle = PrunedWeights(saved=[], mask=mask)
    try:
        with torch.no_grad():
            for key in mask.keys:
                weight = table[key]
                bits = mask[key].to(weight.parameter.device)
                handle.saved.append((weight, bits, weight.weight[bits].clone()))
                weight.weight.masked_fill_(bits, 0)
    except BaseException:
        handle.restore()
        raise
    handle.active = _ACTIVE.setdefault(model, [])
    handle.active.append(handle)
    return handle


@contextmanager
def pruned(model, mask: PruningMask) -> Iterator[PrunedWeights]:
    """Context manager: the masked weights are zero inside the block and restored bit-exactly on exit."""
    handle = prune(model, mask)
    try:
        yield handle
    finally:
        handle.restore()
