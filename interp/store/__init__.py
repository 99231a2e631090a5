"""Activations on disk: captured once from a model, stored as safetensors shards plus a manifest, read memory-mapped.

- ``cache``: ``cache_activations`` (write a store, resumable); ``activations``: ``ActivationStore`` (read one).
- ``derive``: ``derive_store``, a store computed from another store's activations (a dictionary's codes).
- ``capture``: running a model and capturing hook sites (``capture_activations``), what a store streams to disk.
- ``manifest``: the manifest and the checks of every file a store holds.
- ``readout``: the final norm and unembedding, kept beside the activations so a logit lens runs from the store alone.

>>> store = cache_activations(model, prompts, hooks=["resid_post"], out="acts")   # doctest: +SKIP
>>> store = ActivationStore.open("acts")                                          # doctest: +SKIP

Names are imported on first use (``interp.lazy``): ``interp.store.readout`` alone loads no model code.
"""

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

_EXPORTS = {
    "ActivationStore": "interp.store.activations",
    "LOCK": "interp.store.cache",
    "RANK_PROGRESS": "interp.store.cache",
    "cache_activations": "interp.store.cache",
    "derive_store": "interp.store.derive",
    "capture_activations": "interp.store.capture",
    "run_and_capture": "interp.store.capture",
    "Readout": "interp.store.readout",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from interp.store.activations import ActivationStore
    from interp.store.cache import LOCK, RANK_PROGRESS, cache_activations
    from interp.store.capture import capture_activations, run_and_capture
    from interp.store.derive import derive_store
    from interp.store.readout import Readout

__all__ = [
    "LOCK",
    "RANK_PROGRESS",
    "ActivationStore",
    "Readout",
    "cache_activations",
    "capture_activations",
    "derive_store",
    "run_and_capture",
]
