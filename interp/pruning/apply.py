"""Zero the weights of a mask, and put them back bit-exactly.

>>> with pruned(model, mask):            # doctest: +SKIP
...     logits = model(tokens)            # weights restored on exit, also after an exception
>>> handle = prune(model, mask)          # stays pruned ...    # doctest: +SKIP
>>> handle.restore()                     # ... until restored  # doctest: +SKIP
"""

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

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

    saved: list[tuple[DecoderWeight, Tensor, Float[Tensor, "n"]]]  # (weight, mask, original values)
    mask: PruningMask
    restored: bool = False

    def restore(self) -> None:
        """Write the original values back (in reverse order, so nested prunes unwind correctly)."""
        if self.restored:
            return
        with torch.no_grad():
            for weight, mask, values in reversed(self.saved):
                weight.weight.masked_scatter_(mask, values)
        self.restored = True


def prune(model, mask: PruningMask) -> PrunedWeights:
    """Zero the masked weights of ``model`` in place; they stay zero until ``.restore()`` on the result.

    Raises when the mask names weights the model does not have or has other shapes.
    """
    check_keys_match(mask.keys, {key: tuple(mask[key].shape) for key in mask.keys}, model, what="the mask")
    table = {weight.key: weight for weight in decoder_weights(model)}
    for key in mask.keys:
        if table[key].parameter.is_inference():
            raise InterpError(
                f"{key} is an inference-mode tensor and cannot be pruned in place; load the model outside torch.inference_mode()."
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
    return handle


@contextmanager
def pruned(model, mask: PruningMask) -> Iterator[PrunedWeights]:
    """Context manager: the masked weights are zero inside the block and restored bit-exactly on exit."""
    handle = prune(model, mask)
    try:
        yield handle
    finally:
        handle.restore()
