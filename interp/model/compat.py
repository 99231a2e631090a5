"""Workarounds for known breakage between the installed transformers and transformer_lens.

Each workaround detects its bug by behaviour, not by version, is installed only where the bug is
present, and is listed in :func:`active_workarounds` (``interp.provenance``: recorded in every result's provenance).

``attention-cache-kwarg``: transformers 5.24 renamed the KV-cache argument its decoder layers
pass to attention from ``past_key_values`` to ``cache`` (``@deprecate_kwarg("past_key_values",
"5.40.0", new_name="cache")`` on every ``*Attention.forward``). transformer_lens 4.3's
``AttentionBridge._update_kv_cache`` reads only ``past_key_values`` (and ``layer_past``), so
through a ``TransformerBridge`` the cache is never written: each decoded token attends to itself
alone and greedy text degenerates ("sure it it it ..."). The workaround hands the ``cache``
argument on under the name transformer_lens reads. It can go once transformer_lens reads
``cache`` itself; ``tests/test_compat.py`` says when.
"""

import functools
import warnings
from types import SimpleNamespace
from typing import Any

from interp.provenance import active_workarounds, record_workaround

ATTENTION_CACHE_KWARG = "attention-cache-kwarg"


class _RecordingCache:
    """Stands in for a transformers ``Cache``: records whether ``update`` was called."""

    def __init__(self) -> None:
        self.updated = False

    def update(self, keys: Any, values: Any, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        self.updated = True
        return keys, values


def bridge_reads_cache_kwarg(update_kv_cache=None) -> bool:
    """Whether transformer_lens' attention writes a KV cache handed to it as ``cache=``.

    Args:
        update_kv_cache: the function to probe (default: the installed, unpatched
            ``AttentionBridge._update_kv_cache``).
    """
    if update_kv_cache is None:
        update_kv_cache = _original_update_kv_cache()
    recorder = _RecordingCache()
    update_kv_cache(SimpleNamespace(_layer_idx=0, name="probe"), None, None, cache=recorder)
    return recorder.updated


def transformers_passes_cache_kwarg() -> bool:
    """Whether transformers' decoder layers hand attention its KV cache as ``cache=`` (5.24 on)."""
    import inspect

    from transformers.models.llama import modeling_llama

    return "cache" in inspect.signature(modeling_llama.LlamaAttention.forward).parameters


@functools.cache
def cache_kwarg() -> str:
    """The name under which a Hugging Face model takes a KV cache: ``cache`` from 5.24, ``past_key_values`` before."""
    return "cache" if transformers_passes_cache_kwarg() else "past_key_values"


def attention_cache_workaround_needed() -> bool:
    """True where cached generation through a ``TransformerBridge`` would ignore the past."""
    return transformers_passes_cache_kwarg() and not bridge_reads_cache_kwarg()


def install() -> list[str]:
    """Install every workaround the installed versions need (idempotent); return their names."""
    if ATTENTION_CACHE_KWARG not in active_workarounds() and attention_cache_workaround_needed():
        _install_attention_cache_kwarg()
        record_workaround(ATTENTION_CACHE_KWARG)
    return active_workarounds()


def _attention_bridge_class():
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    return AttentionBridge


def _original_update_kv_cache():
    method = _attention_bridge_class()._update_kv_cache
    return getattr(method, "__wrapped__", method)


def _install_attention_cache_kwarg() -> None:
    bridge_class = _attention_bridge_class()
    original = bridge_class._update_kv_cache

    @functools.wraps(original)
    def update_kv_cache(self, k, v, **kwargs):
        if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
            kwargs["past_key_values"] = kwargs["cache"]
        return original(self, k, v, **kwargs)

    bridge_class._update_kv_cache = update_kv_cache
    # The same rename makes transformers warn each time transformer_lens hands a cache to the model's
    # forward under the old name (TransformerBridge.forward(past_key_values=...)), which it still accepts
    # until 5.40; the warning names no step a user can take, so it is silenced while the workaround is in.
    warnings.filterwarnings(
        "ignore",
        message=r"`past_key_values` is deprecated and will be removed in version 5\.40",
        category=FutureWarning,
    )
