"""A plain Hugging Face model that shares a ``TransformerBridge``'s weight tensors, for work that needs no hook point.

Through the bridge every forward runs transformer_lens' own attention (eager, keys and values
repeated per query head) and its wrappers and hook points around every module. Where nothing of
that is read, the plain model computes the same numbers faster: sampling rollouts
(``interp.resampling.LocalBackend``; on the CPU cached rollouts through the bridge were 1.4-2x
slower for Llama-shaped models, SmolLM2-135M included) and caching residual-stream sites
(``interp.store.capture``, with forward hooks on the plain decoder layers). :func:`build_plain_view`
builds the plain model on the ``meta`` device and puts the bridge's own tensors in it (no copy:
in-place edits such as ``interp.pruning.pruned`` show in both), with the architecture's default
attention (SDPA).

A view is refused, with the reason, where the bridge would compute something else: hooks are
attached (``model.hooks(...)``, steering, ablation), the model is split over devices or
quantised, a tensor of the bridge has no place in the plain model, or one forward of both
disagrees. :class:`PlainViewCache` rebuilds the view when a parameter is replaced (as
``interp.directions.orthogonalize`` does).
"""

import copy
import warnings
from typing import TYPE_CHECKING, Any, cast

import torch

if TYPE_CHECKING:
    from transformers import PretrainedConfig

WRAPPED = "._original_component"  # transformer_lens' attribute for the Hugging Face module a bridge wraps
_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}  # max |difference| / max |value| the view may differ by


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| (inf when the shapes differ): how far the view is from the bridge."""
    if got.shape != want.shape:
        return float("inf")
    return float((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-12))


def tolerance(dtype: torch.dtype) -> float:
    """The largest ``relative_error`` accepted for tensors of ``dtype`` (half types: 2e-2)."""
    return _TOLERANCE.get(dtype, 2e-2)


def is_bridged(hf: torch.nn.Module) -> bool:
    """Whether transformer_lens has wrapped the modules of this Hugging Face model."""
    return any(hasattr(module, WRAPPED.lstrip(".")) for module in hf.modules())


_PLUMBING = ("transformers.utils.output_capturing", "transformer_lens.model_bridge.")


def _foreign(module: torch.nn.Module) -> bool:
    """Whether ``module`` carries a hook that could change what the model computes: any on a hook point;
    elsewhere, any but transformers' output recorders and the bridge's own wiring (it only feeds hook points)."""
    from transformer_lens.hook_points import HookPoint

    if getattr(module, "_hf_hook", None) is not None:  # accelerate's device placement
        return True
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values(), *module._backward_hooks.values()]
    return bool(hooks) and (
        isinstance(module, HookPoint) or any(not getattr(h, "__module__", "").startswith(_PLUMBING) for h in hooks)
    )


def hooked_modules(hf: torch.nn.Module, bridge: torch.nn.Module | None = None) -> list[str]:
    """Names of the modules of ``hf`` (and the ``bridge`` around it) with a user's hooks attached."""
    names = [
        name
        for name, module in hf.named_modules()
        if (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or hasattr(module, "_hf_hook"))
        and _foreign(module)
    ]
    if bridge is not None and bridge is not hf and _foreign(bridge):  # the bridge's other modules are hf's
        names.insert(0, type(bridge).__name__)
    return [name or type(hf).__name__ for name in names]


def _tensors(hf: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the bridged model under its plain Hugging Face name (aliases included)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in [*hf.named_parameters(remove_duplicate=False), *hf.named_buffers(remove_duplicate=False)]:
        out.setdefault(name.replace(WRAPPED, ""), tensor)
    return out


def refusal(hf: torch.nn.Module, bridge: torch.nn.Module | None = None, tensors: dict | None = None) -> str:
    """Why no plain view of ``hf`` can stand in for it now ("" when one can)."""
    hooked = hooked_modules(hf, bridge)
    if hooked:
        more = f" and {len(hooked) - 3} more" if len(hooked) > 3 else ""
        return f"hooks are attached ({', '.join(hooked[:3])}{more}); they only run through the bridge"
    device_map = getattr(hf, "hf_device_map", None)
    if device_map and len(set(map(str, device_map.values()))) > 1:
        return "the model is split over devices (device_map)"
    if getattr(hf.config, "quantization_config", None) is not None:
        return "the model is quantised"
    devices = {t.device for t in (tensors if tensors is not None else _tensors(hf)).values()}
    if len(devices) > 1:
        return f"its tensors sit on several devices ({', '.join(sorted(map(str, devices)))})"
    return ""


def build_plain_view(
    hf: torch.nn.Module, check_ids: torch.Tensor | None, tensors: dict[str, torch.Tensor] | None = None
) -> tuple[torch.nn.Module | None, str]:
    """``(plain model sharing hf's tensors, "")``, or ``(None, why not)``.

    Args:
        hf: a bridged Hugging Face causal LM (``TransformerBridge.original_model``).
        check_ids: ``[1, pos]`` token ids; both models' logits on them must agree (None: the caller checks
            what it reads itself, as ``interp.store.capture.Capturer`` does).
        tensors: hf's tensors under their plain names, where the caller has them already (``_tensors(hf)``).
    """
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(cast("PretrainedConfig", hf.config))
    config._attn_implementation = None  # the architecture's default (SDPA where it has it), not the bridge's eager
    config.output_attentions = config.output_hidden_states = (
        False  # the bridge asks for attention patterns; sampling needs none
    )
    try:
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(config)
    except Exception as error:
        return None, f"transformers cannot build {type(hf).__name__} from its config ({type(error).__name__}: {error})"
    source = tensors if tensors is not None else _tensors(hf)
    for name, target in [*plain.named_parameters(remove_duplicate=False), *plain.named_buffers(remove_duplicate=False)]:
        tensor = source.get(name)
        if tensor is None or tensor.shape != target.shape:
            return None, f"the bridge has no tensor of shape {tuple(target.shape)} for {name}"
        module_name, _, leaf = name.rpartition(".")
        module = plain.get_submodule(module_name)
        (module._parameters if leaf in module._parameters else module._buffers)[leaf] = tensor
    why = _nonzero(bridge_only(source, plain))
    if why:
        return None, why
    plain.eval()
    plain.generation_config = copy.deepcopy(hf.generation_config)
    why = _disagreement(hf, plain, check_ids) if check_ids is not None else ""
    return (None, why) if why else (plain, "")


def bridge_only(tensors: dict[str, torch.Tensor], view: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The bridge's tensors that share no storage with the view (lm_head's zero bias buffer): they must stay zero."""
    placed = {t.untyped_storage().data_ptr() for t in [*view.parameters(), *view.buffers()]}
    return {name: t for name, t in tensors.items() if t.untyped_storage().data_ptr() not in placed}


def _nonzero(extras: dict[str, torch.Tensor]) -> str:
    for name, tensor in extras.items():
        if bool(tensor.detach().ne(0).any()):
            return f"the bridge holds a non-zero tensor the plain model lacks: {name}"
    return ""


def _disagreement(hf: torch.nn.Module, plain: torch.nn.Module, ids: torch.Tensor) -> str:
    """ "" when both models give the same logits on ``ids`` (to the dtype's tolerance), else how they differ."""
    with torch.inference_mode():
        want = hf(ids).logits.float()
        got = plain(ids).logits.float()
    limit, error = tolerance(next(plain.parameters()).dtype), relative_error(got, want)
    if error > limit:
        return f"its logits differ from the bridge's by {error:.2g} of their largest (tolerance {limit:g})"
    return ""


class PlainViewCache:
    """What generates for one model: the plain view of a bridge (rebuilt when a tensor is replaced), or the model."""

    def __init__(self, hf: torch.nn.Module, bridge: torch.nn.Module | None = None):
        self.hf, self.bridge = hf, bridge
        self.bridged = is_bridged(hf)
        self._key: tuple | None = None
        self._view: torch.nn.Module | None = None
        self._extras: dict[str, torch.Tensor] = {}
        self._why = ""
        self._warned: set[str] = set()

    def get(self, check_ids: torch.Tensor | None) -> tuple[torch.nn.Module | None, str]:
        """``(view, "")`` when the plain model may generate for the bridge now, else ``(None, why not)``."""
        tensors = _tensors(self.hf)
        why = refusal(self.hf, self.bridge, tensors)
        if why:
            return None, why
        key = tuple(map(id, tensors.values()))
        if key != self._key:
            self._view, self._why = build_plain_view(self.hf, None if check_ids is None else check_ids[:, :8], tensors)
            self._extras = bridge_only(tensors, self._view) if self._view is not None else {}
            self._key = key
        why = _nonzero(self._extras)  # edited in place since the view was built
        return (None, why) if why else (self._view, self._why)

    def generator(
        self, input_ids: torch.Tensor, fast: bool = True, who: str = "generation runs"
    ) -> tuple[torch.nn.Module, str]:
        """``(model, path)``: the plain view (``"plain-view"``), the bridge (``"bridge"``, warned once
        per reason unless ``fast`` is False) or a bare Hugging Face model (``"hf"``)."""
        if not self.bridged:
            return self.hf, "hf"
        view, why = self.get(input_ids) if fast else (None, "")
        if view is not None:
            return view, "plain-view"
        self.warn_once(why, who)
        return self.hf, "bridge"

    def warn_once(self, why: str, who: str) -> None:
        """Warn that ``who`` runs through the bridge because ``why``, once per reason."""
        if why and why not in self._warned:
            self._warned.add(why)
            warnings.warn(f"{who} through the TransformerBridge (slower than a plain model): {why}", stacklevel=4)


def accepts(model: Any, argument: str) -> bool:
    """Whether ``model.forward`` takes ``argument`` (e.g. ``logits_to_keep``)."""
    import inspect

    return argument in inspect.signature(model.forward).parameters
