"""Work a patched forward can leave out when the metric reads only the last position: the engine's shortcuts.

- ``metric_columns``: the unembedding computes only the vocabulary columns the metric reads (a
  logit difference reads two per prompt; the rest of the logits row is left at zero).
- ``last_block_mlp``: the last block's MLP runs at the last position only (its output at earlier
  positions reaches nothing the metric reads: no later block, no unembedded position).

Each replaces one module's ``forward`` for the length of a ``with`` (``shadowing``) and counts its
calls, so the engine can check against a plain forward that it ran and changed nothing it reads.
"""

import contextlib
import math
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.metrics import Metric, reduce_metric

_NO_FORWARD = object()  # a module without an instance-level forward of its own
MAX_COLUMN_FRACTION = 8  # restrict the unembedding only when the metric reads at most 1/8 of the vocabulary


@contextlib.contextmanager
def shadowing(replacements: Sequence[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Within the ``with``, each module's ``forward`` is the given function; on exit (also on an
    exception) each is as it was, an instance ``forward`` it had before (accelerate sets one) included.

    A hook cannot do this (PyTorch runs hooks around ``forward``, never instead of it), so the
    function shadows ``forward`` as an instance attribute.
    """
    saved = [(module, vars(module).get("forward", _NO_FORWARD)) for module, _ in replacements]
    try:
        for module, forward in replacements:
            vars(module)["forward"] = forward
        yield
    finally:
        for module, forward in reversed(saved):
            if forward is _NO_FORWARD:
                vars(module).pop("forward", None)
            else:
                vars(module)["forward"] = forward


class Counted:
    """A replacement ``forward`` that counts its calls (``calls``): proof that a shortcut ran."""

    def __init__(self, forward: Callable):
        self.forward, self.calls = forward, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.forward(*args, **kwargs)


def restricted_unembed(unembed: nn.Module, columns: Int[Tensor, " column"]) -> Counted:
    """A ``forward`` for a TransformerBridge unembedding that computes only ``columns`` (zeros elsewhere).

    It reads the wrapped linear's weight inside the bridge's call, where an offloaded weight is on its device.
    """
    component = unembed.original_component
    if not isinstance(component, nn.Linear):
        raise TypeError(f"the unembedding wraps a {type(component).__name__}, not an nn.Linear")

    def forward(hidden_states: Tensor, **kwargs: Any) -> Tensor:
        hidden_states = unembed.hook_in(hidden_states)
        index = columns.to(component.weight.device)
        bias = component.bias[index] if component.bias is not None else None
        part = F.linear(hidden_states, component.weight[index], bias)
        logits = part.new_zeros(*part.shape[:-1], component.weight.shape[0])
        logits[..., index] = part
        return unembed.hook_out(logits)

    return Counted(forward)


def last_position_mlp(mlp: nn.Module) -> Counted:
    """A ``forward`` for an MLP ``[row, pos, d_model]`` that runs the last position only (zeros elsewhere)."""
    original = mlp.forward  # the class's forward, or an instance forward set before (accelerate)

    def forward(hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        last = original(hidden_states[:, -1:], *args, **kwargs)
        out = last.new_zeros(*hidden_states.shape[:-1], last.shape[-1])
        out[:, -1:] = last
        return out

    return Counted(forward)


def metric_columns(metric: Metric, logits: Float[Tensor, "prompt pos d_vocab"], value: float) -> Int[Tensor, " column"] | None:
    """The vocabulary columns ``metric`` reads at the last position, or None when it reads more than
    1/MAX_COLUMN_FRACTION of them (or the probe fails).

    Candidates are the columns where the metric's gradient is non-zero; they are kept only if the
    metric's value stays the same with every other column of the last position set to NaN and to noise.

    >>> from interp.metrics import logit_diff
    >>> metric, logits = logit_diff(answer=[3, 4], wrong=5), torch.randn(2, 3, 64)
    >>> metric_columns(metric, logits, float(metric(logits).mean())).tolist()
    [3, 4, 5]
    """
    d_vocab = logits.shape[-1]
    last = logits[:, -1:].detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            scalar = reduce_metric(metric, torch.cat([logits[:, :-1].detach(), last], dim=1))
            (gradient,) = torch.autograd.grad(scalar, last, allow_unused=True)
    except Exception:  # noqa: BLE001 - a metric autograd cannot follow: no shortcut
        return None
    if gradient is None:
        return None
    read = (gradient != 0).flatten(0, 1).any(dim=0)
    n_read = int(read.sum())
    if n_read == 0 or n_read * MAX_COLUMN_FRACTION > d_vocab:
        return None
    generator = torch.Generator(device=logits.device).manual_seed(0)
    noise = torch.randn(logits[:, -1].shape, generator=generator, device=logits.device, dtype=logits.dtype)
    for filler in (torch.full_like(noise, math.nan), noise):
        probe = logits.detach().clone()
        probe[:, -1] = torch.where(read, probe[:, -1], filler)
        try:
            probed = float(reduce_metric(metric, probe))
        except Exception:  # noqa: BLE001 - the metric reads a filled column
            return None
        if probed != value:
            return None
    return read.nonzero().flatten().cpu()
