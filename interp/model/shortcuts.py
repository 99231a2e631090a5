"""Forwards replaced for the length of a ``with``: the shortcuts of the patching and induction engines.

- ``skipping_blocks``: the first blocks return their input (a run that starts at a later layer).
- ``restricted_unembed``: the unembedding computes only the vocabulary columns a metric reads (a
  logit difference reads two per prompt; the rest of the logits row is left at zero).
- ``last_position_mlp``: the last block's MLP runs at the last position only (its output at earlier
  positions reaches nothing the metric reads: no later block, no unembedded position).

Each replaces one module's ``forward`` for the length of a ``with`` (``shadowing``) and counts its
calls, so the engine can check against a plain forward that it ran and changed nothing it reads.
"""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor, nn

_NO_FORWARD = object()  # a module without an instance-level forward of its own


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
        hidden_states = cast(nn.Module, unembed.hook_in)(hidden_states)  # a HookPoint submodule
        index = columns.to(component.weight.device)
        bias = component.bias[index] if component.bias is not None else None
        part = F.linear(hidden_states, component.weight[index], bias)
        logits = part.new_zeros(*part.shape[:-1], component.weight.shape[0])
        logits[..., index] = part
        return cast(nn.Module, unembed.hook_out)(logits)

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


@contextlib.contextmanager
def skipping_blocks(model, n_skipped: int) -> Iterator[None]:
    """Within the ``with``, blocks ``0..n_skipped-1`` return their input unchanged (``start_at_layer``
    discards what they compute anyway); on exit, also on an exception, each block is as it was
    (see ``shadowing``: an instance ``forward`` set before, as accelerate does, is put back).
    """

    def identity(*args: Any, **kwargs: Any) -> Tensor:
        return args[0] if args else kwargs["hidden_states"]

    with shadowing([(block, identity) for block in list(model.blocks)[:n_skipped]]):
        yield
