"""A model's weights hash: the content of every parameter and buffer, under its Hugging Face names.

Results and stores record it (``Provenance.weights_hash``) so that nothing is applied to another model's weights.
"""

import weakref
from collections.abc import Iterable

import torch
from torch import nn

from interp.model.internals import hf_name, offloaded_weights
from interp.provenance import hash_bytes, tensor_bytes

_WEIGHTS_HASH_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def weights_hash(model: nn.Module) -> str:
    """Content hash of every parameter and buffer of ``model`` (names, shapes, dtypes, values).

    Cached per model and recomputed only when a parameter changes in place (pruning, training).
    """
    tensors = sorted(_named_tensors(model).items())
    key = tuple((name, t.data_ptr(), _version(t)) for name, t in tensors)
    cached = _WEIGHTS_HASH_CACHE.get(model)
    if cached is not None and cached[0] == key and None not in (version for _, _, version in key):
        return cached[1]

    def chunks() -> Iterable[bytes]:
        for name, tensor in tensors:
            yield f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode()
            yield tensor_bytes(tensor)

    result = hash_bytes(chunks())
    _WEIGHTS_HASH_CACHE[model] = (key, result)
    return result


def _named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # Hash the underlying Hugging Face module when there is one: its names are stable,
    # while a TransformerBridge exposes the same tensor under several aliases. A parameter that a
    # device map offloaded (to the CPU or disk; on the meta device between forwards) is read from
    # its accelerate hook's weights map, so an offloaded model hashes like the same one in memory.
    module = getattr(model, "original_model", model)
    seen: set[int] = set()
    named: dict[str, torch.Tensor] = {}
    for module_name, child in module.named_modules():
        offloaded = offloaded_weights(child)
        own = list(child.named_parameters(recurse=False)) + [
            (n, b) for n, b in child.named_buffers(recurse=False) if "rotary" not in module_name and "inv_freq" not in n
        ]
        for local, tensor in own:
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            if tensor.device.type == "meta" and offloaded is not None and local in offloaded:
                tensor = offloaded[local]
            named[hf_name(f"{module_name}.{local}".removeprefix("."))] = tensor
    return named


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place version counter (None for inference tensors, which have none)."""
    try:
        return tensor._version
    except RuntimeError:
        return None
