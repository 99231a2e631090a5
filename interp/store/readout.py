"""The readout: final norm + unembedding, as data, so the residual stream decodes without the model.

A store keeps one of these (``readout.safetensors``), which is what lets a logit lens run
from disk. ``Readout.from_model`` checks itself against the model's own logits.
"""

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor

from interp.errors import InterpError
from interp.io import atomic_write_safetensors
from interp.sites import site_name

NormKind = Literal["layernorm", "rmsnorm", "none"]


FAITHFUL_TOLERANCE = (
    1e-3  # max |readout - logits| relative to max(1, max |W_U|) for a readout to stand in for the logits
)


@dataclass(frozen=True, eq=False)
class Readout:
    """``logits = unembed(final_norm(resid))``, computed in float32.

    Args:
        norm: "layernorm", "rmsnorm" or "none".
        weight / bias: the final norm's parameters ``[d_model]`` (None where absent).
        eps: the norm's epsilon.
        weight_offset: added to ``weight`` (1.0 for Gemma's RMSNorm, which scales by 1 + w).
        W_U: ``[d_model, d_vocab]``; b_U: ``[d_vocab]`` or None.
        softcap: final-logit soft-capping (Gemma 2), or None.
        verified_max_abs_diff: max |readout(resid) - model logits| measured by ``from_model``.
    """

    norm: NormKind
    weight: Float[Tensor, " d_model"] | None
    bias: Float[Tensor, " d_model"] | None
    eps: float
    weight_offset: float
    W_U: Float[Tensor, "d_model d_vocab"]
    b_U: Float[Tensor, " d_vocab"] | None
    softcap: float | None = None
    verified_max_abs_diff: float = math.nan

    def __post_init__(self) -> None:
        d_model = self.W_U.shape[0]
        for name in ("weight", "bias"):
            value = getattr(self, name)
            if value is not None and value.shape != (d_model,):
                raise InterpError(f"readout {name} has shape {tuple(value.shape)}, expected ({d_model},)")
        if self.b_U is not None and self.b_U.shape != (self.W_U.shape[1],):
            raise InterpError(f"readout b_U has shape {tuple(self.b_U.shape)}, expected ({self.W_U.shape[1]},)")

    @property
    def d_model(self) -> int:
        return self.W_U.shape[0]

    @property
    def d_vocab(self) -> int:
        return self.W_U.shape[1]

    def normalize(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The final norm, in float32."""
        self._check_width(resid, "normalize")
        x = resid.float()
        weight = None if self.weight is None else self.weight.float().to(x.device) + self.weight_offset
        bias = None if self.bias is None else self.bias.float().to(x.device)
        if self.norm == "layernorm":
            return F.layer_norm(x, (self.d_model,), weight, bias, self.eps)
        if self.norm == "rmsnorm":
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
            x = x if weight is None else x * weight
            return x if bias is None else x + bias
        return x

    def unembed(self, normalized: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
        """Logits from an already-normalized residual."""
        self._check_width(normalized, "unembed")
        logits = normalized.float() @ self.W_U.float().to(normalized.device)
        if self.b_U is not None:
            logits = logits + self.b_U.float().to(normalized.device)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def __call__(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
        return self.unembed(self.normalize(resid))

    def _check_width(self, resid: Tensor, what: str) -> None:
        if not isinstance(resid, Tensor) or resid.ndim == 0 or resid.shape[-1] != self.d_model:
            shape = tuple(resid.shape) if isinstance(resid, Tensor) else type(resid).__name__
            raise InterpError(
                f"the readout's {what} takes residual-stream vectors of width {self.d_model} (d_model) in the last "
                f"dimension, got {shape}; pass activations of a residual site of this model."
            )

    @property
    def faithful(self) -> bool:
        """Whether it was verified to reproduce the model's logits to ``FAITHFUL_TOLERANCE`` x max(1, max |W_U|)."""
        return self.verified_max_abs_diff <= FAITHFUL_TOLERANCE * max(1.0, largest_magnitude(self.W_U))

    @classmethod
    def from_model(cls, model) -> "Readout":
        """Read the final norm and unembedding off a TransformerBridge and verify them on a probe input."""
        from interp.model import materialized

        norm_module = getattr(model.ln_final, "original_component", model.ln_final)
        unembed_module = getattr(model.unembed, "original_component", model.unembed)
        with (
            materialized(norm_module),
            materialized(unembed_module),
        ):  # weights a device map offloaded, read where they are kept
            kind, weight, bias, eps, offset = _describe_norm(norm_module)
            weight, bias = (None if t is None else t.detach().clone() for t in (weight, bias))
            W_U = unembed_module.weight.detach().T.clone(
                memory_format=torch.contiguous_format
            )  # one copy, [d_model, d_vocab]
            b_U = getattr(unembed_module, "bias", None)
            b_U = None if b_U is None else b_U.detach().clone()
        config = getattr(getattr(model, "original_model", None), "config", None)
        softcap = getattr(config, "final_logit_softcapping", None) if config is not None else None
        readout = cls(kind, weight, bias, eps, offset, W_U, b_U, softcap)
        diff = _verify(readout, model)
        object.__setattr__(readout, "verified_max_abs_diff", diff)
        if not readout.faithful:
            warnings.warn(
                f"the readout read off {type(norm_module).__name__} reproduces the model's logits only to "
                f"{diff:.2e}; logit-lens results from a store will be approximate for this architecture.",
                stacklevel=2,
            )
        return readout

    def save(self, path: str | Path) -> None:
        """Write ``readout.safetensors`` (tensors + JSON metadata), atomically."""
        tensors = {"W_U": self.W_U}
        for name in ("weight", "bias", "b_U"):
            if getattr(self, name) is not None:
                tensors[name] = getattr(self, name)
        meta = {
            "norm": self.norm,
            "eps": self.eps,
            "weight_offset": self.weight_offset,
            "softcap": self.softcap,
            "verified_max_abs_diff": self.verified_max_abs_diff,
        }
        atomic_write_safetensors(Path(path), tensors, {"readout": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> "Readout":
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = json.loads(handle.metadata()["readout"])
            tensors = load_file(str(path))
            return cls(
                norm=meta["norm"],
                weight=tensors.get("weight"),
                bias=tensors.get("bias"),
                eps=float(meta["eps"]),
                weight_offset=float(meta["weight_offset"]),
                W_U=tensors["W_U"],
                b_U=tensors.get("b_U"),
                softcap=meta["softcap"],
                verified_max_abs_diff=float(meta["verified_max_abs_diff"]),
            )
        except InterpError:
            raise
        except Exception as error:
            detail = f"its metadata has no {error}" if isinstance(error, KeyError) else str(error)
            raise InterpError(
                f"cannot read the readout {path}: {detail}. Re-create the store with `interp cache`."
            ) from error


def describe_norm(module) -> tuple[NormKind, Tensor | None, Tensor | None, float, float]:
    """``(kind, weight, bias, eps, weight_offset)`` of a LayerNorm / RMSNorm module, as a Readout holds its final norm.

    Other analyses read a block's norms with it too (direct logit attribution freezes Gemma 2's post-attention norm).
    """
    return _describe_norm(module)


def _describe_norm(module) -> tuple[NormKind, Tensor | None, Tensor | None, float, float]:
    def param(name: str) -> Tensor | None:
        value = getattr(module, name, None)
        return None if value is None else value.detach().clone()

    if isinstance(module, torch.nn.LayerNorm):
        return "layernorm", param("weight"), param("bias"), float(module.eps), 0.0
    name = type(module).__name__
    if "RMSNorm" in name:
        eps = getattr(module, "eps", None) or getattr(module, "variance_epsilon", None) or 1e-6
        offset = 1.0 if name.startswith("Gemma") else 0.0
        return "rmsnorm", param("weight"), param("bias"), float(eps), offset
    if "LayerNorm" in name:
        eps = getattr(module, "eps", None) or getattr(module, "variance_epsilon", None) or 1e-5
        return "layernorm", param("weight"), param("bias"), float(eps), 0.0
    if isinstance(module, torch.nn.Identity):
        return "none", None, None, 0.0, 0.0
    raise InterpError(
        f"cannot read the final norm of type {name}: interp knows LayerNorm and RMSNorm variants. "
        "Cache without a readout, or add the norm to interp.store.readout._describe_norm."
    )


def largest_magnitude(tensor: Tensor) -> float:
    """max |tensor| in one pass and without a copy (``abs().max()`` writes the whole |tensor| first: 6x slower)."""
    low, high = torch.aminmax(tensor.detach())
    return max(-float(low), float(high))


@torch.no_grad()
def _verify(readout: Readout, model) -> float:
    n_layers = model.cfg.n_layers
    vocab = min(readout.d_vocab, 1000)
    tokens = torch.arange(1, 9).remainder(vocab - 1).add(1).unsqueeze(0).to(model.cfg.device)
    captured: dict[str, Tensor] = {}

    def save(tensor: Tensor, hook) -> Tensor:
        captured["resid"] = tensor.detach()
        return tensor

    with model.hooks(fwd_hooks=[(site_name("resid_post", n_layers - 1), save)]):
        logits = model(tokens, attention_mask=torch.ones_like(tokens))
    return float((readout(captured["resid"]) - logits.float()).abs().max())
