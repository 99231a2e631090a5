"""Run a model over prompts and capture hook sites at chosen positions: what a store writes, in memory.

``capture_activations`` keeps the result in memory; ``interp.store.cache_activations`` streams the
same batches to disk. Batches are right-padded and each prompt's own last token is read, so a
prompt's activations do not depend on what it was batched with.
"""

from typing import Literal, Sequence

import torch
from torch import Tensor

from interp import defaults
from interp.data import PromptSet, iter_batches, pad_token_id, tokenize_prompts
from interp.errors import InterpError
from interp.sites import PATTERN_SITES, expand_sites, parse_site, unknown_site_error

Positions = Literal["last", "all"] | Sequence[int]

DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}

def capture_activations(
    model,
    prompts: PromptSet | Sequence[str],
    hooks: Sequence[str] = ("resid_post",),
    positions: Positions = "last",
    batch_size: int = defaults.CACHE_BATCH_SIZE,
    dtype: str | torch.dtype | None = None,
) -> dict[str, Tensor]:
    """The same activations ``cache_activations`` writes, kept in memory: ``{hook name: [prompt, ...]}``.

    For small prompt sets and analyses that run straight from a model.
    """
    prompt_set = prompts if isinstance(prompts, PromptSet) else PromptSet.from_texts(list(prompts))
    hook_names = expand_sites(hooks, int(model.cfg.n_layers))
    check_model_has(model, hook_names)
    token_lists = tokenize_prompts(model, prompt_set)
    lengths = torch.tensor([len(ids) for ids in token_lists])
    position_spec = normalize_positions(positions, lengths)
    storage_dtype = resolve_storage_dtype(dtype, model)
    pieces: dict[str, list[Tensor]] = {name: [] for name in hook_names}
    with torch.inference_mode():
        for batch in iter_batches(token_lists, batch_size, pad_token_id(model)):
            captured = run_and_capture(model, batch, hook_names, position_spec, int(lengths.max()), storage_dtype)
            for name in hook_names:
                pieces[name].append(captured[name])
    return {name: torch.cat(parts) for name, parts in pieces.items()}


def check_model_has(model, hook_names: Sequence[str]) -> None:
    valid = set(model.hook_dict) | set(getattr(model, "_hook_alias_registry", {}) or {})
    for name in hook_names:
        if model.get_hook_point(name) is None:
            raise unknown_site_error(name, sorted(valid))


def normalize_positions(positions: Positions, lengths: Tensor) -> str | list[int]:
    if isinstance(positions, str):
        if positions not in ("last", "all"):
            raise InterpError(f"positions must be 'last', 'all' or a list of integers, got {positions!r}.")
        return positions
    explicit = [int(p) for p in positions]
    if not explicit:
        raise InterpError("positions is an empty list; give at least one position, or 'last' / 'all'.")
    shortest = int(lengths.min())
    for p in explicit:
        if not -shortest <= p < shortest:
            raise InterpError(
                f"position {p} does not exist in the shortest prompt ({shortest} tokens); "
                f"use positions between {-shortest} and {shortest - 1}, or negative positions counted from each prompt's end."
            )
    return explicit


def resolve_storage_dtype(dtype, model) -> torch.dtype:
    if dtype is None:
        model_dtype = next(model.parameters()).dtype
        return model_dtype if model_dtype in DTYPE_NAMES else torch.float32
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        lookup = {name: value for value, name in DTYPE_NAMES.items()}
        if dtype not in lookup:
            raise InterpError(f"unknown storage dtype {dtype!r}; use one of {', '.join(lookup)}.")
        resolved = lookup[dtype]
    if resolved not in DTYPE_NAMES:
        raise InterpError(f"cannot store activations as {resolved}; use float32, bfloat16 or float16.")
    return resolved


class _AllCaptured(Exception):
    """Raised by the last capture hook: the rest of the forward (later blocks, unembedding) is not needed."""


def run_and_capture(model, batch, hook_names, positions, max_length: int, dtype: torch.dtype) -> dict[str, Tensor]:
    """Run one batch and return the selected positions of every hook; the forward stops after the last one."""
    device = model.cfg.device
    tokens = batch.tokens.to(device)
    mask = batch.attention_mask.to(device)
    last = (batch.lengths - 1).to(device)
    captured: dict[str, Tensor] = {}

    def make_hook(name: str):
        is_pattern = parse_site(name).kind in PATTERN_SITES

        def hook(tensor: Tensor, hook) -> Tensor:
            captured[name] = _select_positions(tensor, positions, last, batch.lengths.to(device), max_length, is_pattern).to("cpu", dtype)
            if len(captured) == len(hook_names):
                raise _AllCaptured
            return tensor

        return hook

    with model.hooks(fwd_hooks=[(name, make_hook(name)) for name in hook_names]):
        try:
            model(tokens, attention_mask=mask, return_type=None)
        except _AllCaptured:
            pass
    missing = [name for name in hook_names if name not in captured]
    if missing:
        raise InterpError(f"the hooks {missing} never fired for this model; it may not compute them. Choose other sites.")
    return captured


def _select_positions(tensor: Tensor, positions, last: Tensor, lengths: Tensor, max_length: int, is_pattern: bool) -> Tensor:
    """Pick positions along the (query) position axis; pad position axes to the store's max length."""
    if is_pattern:  # [batch, head, query, key] -> position axis first: [batch, query, head, key]
        tensor = tensor.transpose(1, 2)
        tensor = _pad_axis(tensor, 3, max_length)
        key_valid = torch.arange(max_length, device=tensor.device)[None, :] < lengths[:, None]
        tensor = tensor * key_valid[:, None, None, :].to(tensor.dtype)
    rows = torch.arange(tensor.shape[0], device=tensor.device)
    if positions == "last":
        selected = tensor[rows, last]
    elif positions == "all":
        selected = _pad_axis(tensor, 1, max_length)
        valid = torch.arange(max_length, device=tensor.device)[None, :] < lengths[:, None]
        selected = selected * valid.view(*valid.shape, *([1] * (selected.dim() - 2))).to(selected.dtype)
    else:
        wanted = torch.tensor(positions, device=tensor.device)
        index = torch.where(wanted[None, :] < 0, lengths[:, None] + wanted[None, :], wanted[None, :].expand(len(rows), -1))
        selected = tensor[rows[:, None], index]
    if is_pattern:  # back to [batch, (query,) head, key]
        selected = selected.transpose(-3, -2) if positions != "last" else selected
    return selected.contiguous()


def _pad_axis(tensor: Tensor, axis: int, size: int) -> Tensor:
    missing = size - tensor.shape[axis]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=axis)
