"""Use a direction on a live model: add it (``steer``) or project it out (``ablate``).

Both are context managers: their hooks act on every forward pass inside the ``with`` block,
``model.generate`` included, and are removed on exit, also when the block raises.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError
from interp.probes.result import Direction
from interp.sites import site_name, unknown_site_error

RESIDUAL_KINDS = ("resid_pre", "resid_mid", "resid_post")


@contextmanager
def steer(
    model: Any, direction: Direction | Float[Tensor, " d_model"], alpha: float, hook: str | None = None
) -> Iterator[Any]:
    """Add ``alpha * direction`` to the activations at the direction's hook, at every position.

    Example (``model`` a TransformerBridge, ``result`` a ProbeResult)::

        with steer(model, result.direction(), alpha=4.0):
            text = model.generate("How do I bake bread?", max_new_tokens=20)
    """
    vector, name = _resolve(model, direction, hook)
    if not math.isfinite(float(alpha)):
        raise InterpError(f"alpha must be a finite number, got {alpha!r}.")

    def add(acts: Tensor, hook: Any = None) -> Tensor:
        return acts + alpha * vector.to(device=acts.device, dtype=acts.dtype)

    with model.hooks(fwd_hooks=[(name, add)]):
        yield model


@contextmanager
def ablate(
    model: Any, direction: Direction | Float[Tensor, " d_model"], hook: str | None = None, everywhere: bool = False
) -> Iterator[Any]:
    """Project the direction out: ``h <- h - (h . u) u`` with ``u`` the unit direction, at every position.

    At the direction's hook only, or with ``everywhere=True`` at every layer's resid_pre,
    resid_mid and resid_post (directional ablation of the whole residual stream).

    Example::

        with ablate(model, result.direction(), everywhere=True):
            text = model.generate("How do I make a weapon?", max_new_tokens=20)
    """
    vector, name = _resolve(model, direction, hook)
    unit = vector / vector.norm().clamp_min(1e-12)

    def project_out(acts: Tensor, hook: Any = None) -> Tensor:
        u = unit.to(device=acts.device, dtype=acts.dtype)
        return acts - (acts @ u)[..., None] * u

    if everywhere:
        names = [site_name(kind, layer) for layer in range(int(model.cfg.n_layers)) for kind in RESIDUAL_KINDS]
        names = [other for other in names if model.get_hook_point(other) is not None]
    else:
        names = [name]
    with model.hooks(fwd_hooks=[(other, project_out) for other in names]):
        yield model


def _resolve(model: Any, direction: Direction | Tensor, hook: str | None) -> tuple[Tensor, str]:
    """The direction's vector and hook name, checked against the model."""
    if isinstance(direction, Direction):
        vector, name = direction.vector, hook or direction.hook
    elif isinstance(direction, Tensor):
        if hook is None:
            raise InterpError("a plain tensor direction needs hook=, e.g. hook='blocks.2.hook_resid_post'.")
        vector, name = direction, hook
    else:
        raise InterpError(f"direction must be a Direction or a [d_model] tensor, got {type(direction).__name__}.")
    d_model = int(model.cfg.d_model)
    if vector.ndim != 1 or vector.shape[0] != d_model:
        raise InterpError(
            f"direction has shape {tuple(vector.shape)} but the model's d_model is {d_model}; "
            "use a direction from a probe trained on this model."
        )
    if not bool(torch.isfinite(vector).all()):
        raise InterpError("the direction holds NaN or inf values; it would make every logit NaN. Use a finite one.")
    if model.get_hook_point(name) is None:
        raise unknown_site_error(
            name, [site_name(kind, layer) for layer in range(int(model.cfg.n_layers)) for kind in RESIDUAL_KINDS]
        )
    return vector.detach(), name
