"""The model: loading, the registry of named models, converters of pretrained files, dependency
workarounds, the plain Hugging Face view and the forwards replaced for a ``with``.

The one part of interp that knows transformer_lens' and transformers' internals.

- ``loading``: ``load_model`` (a registered name, a local directory or a hub id), devices and offloading.
- ``registry``: ``register_model`` and the ``interp.models`` entry point group.
- ``pretrained``: the packaged real models (SmolLM2, Qwen2.5-Coder), fetched and converted once.
- ``compat``: workarounds for known breakage between the installed transformers and transformer_lens.
- ``plain_view``: a plain Hugging Face model sharing the bridge's tensors (fast captures and rollouts).
- ``shortcuts``: forward shadowing, block skipping and the patching engine's shortcuts.
"""

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
]
