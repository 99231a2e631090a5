"""The decoder-layer linear weights that pruning scores and masks: discovery and naming.

Keys follow the bridge's own component names, one per weight matrix:

- ``blocks.{layer}.attn.q`` / ``.k`` / ``.v`` / ``.o``: attention projections (GPT-2's fused
  ``c_attn`` is split by the bridge into q, k and v views of the same memory; those are used);
- ``blocks.{layer}.mlp.gate`` / ``.in`` / ``.out``: MLP gate, up (``up_proj``, ``c_fc``) and down
  (``down_proj``, ``c_proj``) projections;
- any other linear layer inside a block: ``blocks.{layer}.`` + its module path with
  ``._original_component`` removed.

Embeddings, norms and the unembedding are never included. Every weight is seen in the
``[d_out, d_in]`` orientation of ``nn.Linear`` (a GPT-2 ``Conv1D`` weight is viewed transposed),
so scores and masks have one layout for every architecture.

>>> [w.key for w in decoder_weights(model)][:4]            # doctest: +SKIP
['blocks.0.attn.q', 'blocks.0.attn.k', 'blocks.0.attn.v', 'blocks.0.attn.o']
"""

from dataclasses import dataclass
from typing import cast

from jaxtyping import Float
from torch import Tensor, nn

from interp.errors import InterpError
from interp.model.internals import hf_name, unwrapped

# Order of the known weights inside a block; "qkv" is skipped when q, k and v exist (it shares
# their memory and the bridge's forward does not use it).
_KNOWN = {"attn": ("q", "k", "v", "o"), "mlp": ("gate", "in", "out")}


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _is_linear(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (isinstance(module, nn.Linear) or _is_conv1d(module)) and isinstance(weight, Tensor) and weight.dim() == 2


def _linear_weight(module: nn.Module) -> nn.Parameter:
    """The weight of a module that passed ``_is_linear`` (an nn.Linear or Conv1D registers it as a Parameter)."""
    return cast(nn.Parameter, module.weight)


@dataclass(frozen=True, eq=False)
class DecoderWeight:
    """One decoder-layer weight matrix: its key, layer, and the module whose forward uses it."""

    key: str
    layer: int
    component: str  # "attn", "mlp", or the first part of the module path for other linears
    name: str  # "q", "k", "v", "o", "gate", "in", "out", or the rest of the module path
    module: nn.Module  # the nn.Linear (or Conv1D) the forward calls

    @property
    def transposed(self) -> bool:
        """True for a Conv1D, whose parameter is stored as [d_in, d_out]."""
        return _is_conv1d(self.module)

    @property
    def parameter(self) -> nn.Parameter:
        return _linear_weight(self.module)

    @property
    def weight(self) -> Float[Tensor, "d_out d_in"]:
        """The weight as [d_out, d_in], a view sharing the parameter's memory (writes go through)."""
        return self.parameter.T if self.transposed else self.parameter

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.parameter.shape
        return (cols, rows) if self.transposed else (rows, cols)

    @property
    def numel(self) -> int:
        return self.parameter.numel()


def decoder_weights(model: nn.Module) -> tuple[DecoderWeight, ...]:
    """Every decoder-layer linear weight of a ``TransformerBridge``, in layer order.

    Raises ``InterpError`` when the model has no decoder blocks or no linear layer in them.
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.ModuleList, list, tuple)) or len(blocks) == 0:
        raise InterpError(
            f"{type(model).__name__} has no decoder blocks (no `model.blocks`), so it has no decoder-layer "
            "linear weights to score or prune. Load the model with interp.load_model(...) to get a TransformerBridge."
        )
    found: list[DecoderWeight] = []
    for layer, block in enumerate(blocks):
        found.extend(_block_weights(block, layer))
    if not found:
        raise InterpError(
            f"{type(model).__name__} has {len(blocks)} decoder blocks but no linear layers (nn.Linear or Conv1D) "
            "inside them, so there are no decoder-layer weights to score or prune."
        )
    offloaded = [weight.key for weight in found if weight.parameter.device.type == "meta"]
    if offloaded:
        raise InterpError(
            f"{offloaded[0]} (and {len(offloaded) - 1} more) was offloaded by the device map and sits on the meta "
            "device between forwards; pruning scores and edits weights in place, so load the model with every layer "
            "on a device (device=... or a device_map without 'disk' or CPU offload)."
        )
    return tuple(found)


def _block_weights(block: nn.Module, layer: int) -> list[DecoderWeight]:
    weights: list[DecoderWeight] = []
    seen_modules: set[int] = set()
    seen_storage: set[int] = set()

    def add(key: str, component: str, name: str, module: nn.Module) -> None:
        seen_modules.add(id(module))
        seen_storage.add(_linear_weight(module).untyped_storage().data_ptr())
        weights.append(DecoderWeight(key=key, layer=layer, component=component, name=name, module=module))

    # 1. the bridge's named components, in a fixed order
    for component, names in _KNOWN.items():
        bridge = getattr(block, component, None)
        submodules = getattr(bridge, "submodules", None) or {}
        for name in names:
            if name in submodules and _is_linear(unwrapped(submodules[name])):
                add(f"blocks.{layer}.{component}.{name}", component, name, unwrapped(submodules[name]))
        fused = submodules.get("qkv")
        if fused is not None and all(n in submodules for n in ("q", "k", "v")):
            seen_modules.add(id(unwrapped(fused)))
    # 2. any other linear layer in the block (architectures the bridge names differently)
    for path, module in block.named_modules():
        if not _is_linear(module) or id(module) in seen_modules:
            continue
        if _linear_weight(module).untyped_storage().data_ptr() in seen_storage:
            continue  # shares memory with a weight already listed (a fused qkv beside its split q/k/v)
        clean = hf_name(path)
        component, _, name = clean.partition(".")
        add(f"blocks.{layer}.{clean}", component, name or component, module)
    return weights


def weight_table(model: nn.Module) -> dict[str, DecoderWeight]:
    """``decoder_weights`` keyed by weight key."""
    return {weight.key: weight for weight in decoder_weights(model)}
