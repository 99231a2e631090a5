"""The model: loading, the registry of named models, converters of pretrained files, dependency
workarounds, the plain Hugging Face view and the forwards replaced for a ``with``.

The one part of interp that knows transformer_lens' and transformers' internals.

- ``loading``: ``load_model`` (a registered name, a local directory or a hub id), devices and offloading.
- ``registry``: ``register_model`` and the ``interp.models`` entry point group.
- ``pretrained``: the packaged real models (SmolLM2, Qwen2.5-Coder), fetched and converted once.
- ``compat``: workarounds for known breakage between the installed transformers and transformer_lens.
- ``plain_view``: a plain Hugging Face model sharing the bridge's tensors (fast captures and rollouts).
- ``shortcuts``: forward shadowing, block skipping and the patching engine's shortcuts.
- ``internals``: every private name of transformer_lens, transformers and accelerate that interp reads
  (``tests/test_private_names.py`` fails if any module outside this package names one).
- ``weights``: ``weights_hash``, the content hash of a model's parameters under their Hugging Face names.

Names are imported on first use (``interp.lazy``): ``interp.model.registry`` alone loads no transformer_lens.
"""

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

_EXPORTS = {
    "has_offloaded_weights": "interp.model.loading",
    "load_model": "interp.model.loading",
    "materialized": "interp.model.loading",
    "model_id": "interp.model.loading",
    "ENTRY_POINT_GROUP": "interp.model.registry",
    "ORGANISM_PREFIX": "interp.model.registry",
    "RegisteredModel": "interp.model.registry",
    "did_you_mean": "interp.model.registry",
    "register_model": "interp.model.registry",
    "registered_model": "interp.model.registry",
    "registered_models": "interp.model.registry",
    "resolve_model": "interp.model.registry",
    "weights_hash": "interp.model.weights",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from interp.model.loading import has_offloaded_weights, load_model, materialized, model_id
    from interp.model.registry import (
        ENTRY_POINT_GROUP,
        ORGANISM_PREFIX,
        RegisteredModel,
        did_you_mean,
        register_model,
        registered_model,
        registered_models,
        resolve_model,
    )
    from interp.model.weights import weights_hash

__all__ = [
    "ENTRY_POINT_GROUP",
    "ORGANISM_PREFIX",
    "RegisteredModel",
    "did_you_mean",
    "has_offloaded_weights",
    "load_model",
    "materialized",
    "model_id",
    "register_model",
    "registered_model",
    "registered_models",
    "resolve_model",
    "weights_hash",
]
