"""Every private name of transformer_lens, transformers and accelerate that interp reads, in one place.

The rest of interp asks these functions instead of naming the attributes, so an upgrade that renames one of them
breaks here, where ``tests/test_private_names.py`` points, and nowhere else.

- A TransformerBridge component (``blocks.3.attn.o``) wraps the Hugging Face module it adapts as
  ``original_component`` (``_original_component`` in some versions); the same parameter then appears under both
  names, and Hugging Face names have no wrapper segment.
- accelerate keeps the weights of a module it offloaded (device map with CPU or disk offload) in
  ``module._hf_hook.weights_map``; the parameter itself sits on the meta device between forwards.
- transformers records the attention implementation a config was built with as ``config._attn_implementation``.
"""

from collections.abc import Mapping
from typing import Any

from torch import nn

BRIDGE_WRAPPER = "_original_component"  # the attribute through which a bridge component holds the module it wraps


def wrapped_module(component: Any) -> nn.Module | None:
    """The Hugging Face module a bridge component wraps, or None when ``component`` wraps nothing."""
    return getattr(component, "original_component", None) or getattr(component, BRIDGE_WRAPPER, None)


def unwrapped(component: nn.Module) -> nn.Module:
    """The module a bridge component wraps, else the component itself."""
    return wrapped_module(component) or component


def hf_name(path: str) -> str:
    """A parameter or module path with the bridge's wrapper segments removed (its Hugging Face name)."""
    return path.replace(f".{BRIDGE_WRAPPER}", "").replace(f"{BRIDGE_WRAPPER}.", "")


def offloaded_weights(module: nn.Module) -> Mapping[str, Any] | None:
    """The weights accelerate keeps for ``module`` while its parameters sit on the meta device (None: not offloaded)."""
    return getattr(getattr(module, "_hf_hook", None), "weights_map", None)


def attention_implementation(hf_model: nn.Module) -> str | None:
    """The attention implementation a Hugging Face model runs ("eager", "sdpa", ...), None if it does not say."""
    return getattr(getattr(hf_model, "config", None), "_attn_implementation", None)


def source_name(hf_model: nn.Module) -> str:
    """Where a Hugging Face model was loaded from (hub id or directory), else its class name."""
    config = getattr(hf_model, "config", None)
    return str(getattr(config, "name_or_path", "") or type(hf_model).__name__)


def hook_aliases(bridge: Any) -> Mapping[str, Any]:
    """The hook names a TransformerBridge accepts as aliases of its own (``hook_resid_pre`` of the old
    HookedTransformer)."""
    return getattr(bridge, "_hook_alias_registry", None) or {}
