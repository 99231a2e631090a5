"""What patching checks before it runs: prompts to same-length token pairs, the direction, the
hooks, and where each site is written (resid_mid through attn_out)."""

from collections.abc import Mapping, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from interp import defaults
from interp.data import PromptSet, tokenize_prompts
from interp.errors import InterpError
from interp.sites import layer_sites, site_name

Prompts = PromptSet | Sequence[str] | str | Int[Tensor, "prompt pos"]
TOLERANCE = 1e-4  # relative: the fast path against a plain forward, resid_mid against resid_pre + attn_out

# TransformerBridge's hook_resid_mid is the MLP's input (ln2.hook_in): a write there changes what
# the MLP reads but not the residual stream that bypasses the MLP. So resid_mid is written through
# attn_out (resid_mid = resid_pre + attn_out, checked on every run): attn_out := source - resid_pre.
WRITTEN_THROUGH = {"resid_mid": "attn_out"}


def as_tokens(model, prompts: Prompts, what: str) -> Int[Tensor, "prompt pos"]:
    if isinstance(prompts, Tensor):
        tokens = prompts.long()
        if tokens.ndim == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.ndim == 2 and tokens.shape[0] == 0:
            raise InterpError(
                f"got no {what} prompts (a token tensor of shape {tuple(prompts.shape)}); give at least one prompt."
            )
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise InterpError(f"{what} tokens must have shape [prompt, pos], got {tuple(prompts.shape)}.")
        d_vocab = int(model.cfg.d_vocab)
        if tokens.min() < 0 or tokens.max() >= d_vocab:
            raise InterpError(
                f"{what} token ids must be in 0..{d_vocab - 1} (the model's vocabulary), "
                f"got {int(tokens.min())}..{int(tokens.max())}; pass ids from model.to_tokens."
            )
        return tokens.cpu()
    prompts = [prompts] if isinstance(prompts, str) else prompts if isinstance(prompts, PromptSet) else list(prompts)
    if len(prompts) == 0:
        raise InterpError(f"got no {what} prompts; give at least one (and one corrupt prompt per clean prompt).")
    token_lists = tokenize_prompts(model, prompts)
    lengths = {len(ids) for ids in token_lists}
    if len(lengths) > 1:
        by_length: dict[int, list[int]] = {}
        for index, ids in enumerate(token_lists):
            by_length.setdefault(len(ids), []).append(index)
        groups = "; ".join(
            f"{length} tokens: prompts {indices[:6]}{'...' if len(indices) > 6 else ''}"
            for length, indices in sorted(by_length.items())
        )
        raise InterpError(
            f"the {what} prompts tokenize to different lengths ({groups}). Position-wise patching compares the same "
            "position across prompts, so all prompts must have the same token length: "
            "run each length group separately, or reword the prompts to a common template."
        )
    return torch.stack(token_lists)


def pair_tokens(model, clean: Prompts, corrupt: Prompts) -> tuple[Int[Tensor, "prompt pos"], Int[Tensor, "prompt pos"]]:
    clean_tokens = as_tokens(model, clean, "clean")
    corrupt_tokens = as_tokens(model, corrupt, "corrupt")
    if clean_tokens.shape[0] != corrupt_tokens.shape[0]:
        raise InterpError(
            f"got {clean_tokens.shape[0]} clean prompts but {corrupt_tokens.shape[0]} corrupt prompts; "
            "give one corrupt prompt per clean prompt, in the same order."
        )
    if clean_tokens.shape[1] != corrupt_tokens.shape[1]:
        first_clean = str_tokens(model, clean_tokens[0])
        first_corrupt = str_tokens(model, corrupt_tokens[0])
        raise InterpError(
            f"clean prompts are {clean_tokens.shape[1]} tokens long but corrupt prompts are {corrupt_tokens.shape[1]} "
            f"(first pair: {first_clean} vs {first_corrupt}). Patching swaps activations position by position, so each "
            "corrupt prompt must tokenize to the same length as its clean prompt: substitute words that are the same "
            "number of tokens (e.g. single-token names)."
        )
    return clean_tokens, corrupt_tokens


def str_tokens(model, tokens: Int[Tensor, " pos"]) -> tuple[str, ...]:
    try:
        return tuple(str(t) for t in model.to_str_tokens(tokens.cpu()))
    except Exception:
        return tuple(str(int(t)) for t in tokens)


def position_labels(model, clean: Int[Tensor, " pos"], corrupt: Int[Tensor, " pos"]) -> tuple[str, ...]:
    """One label per position of a prompt pair: ``"3:fox"``, or ``"3:fox→dog"`` where the corrupt token differs."""
    clean_str, corrupt_str = str_tokens(model, clean), str_tokens(model, corrupt)
    return tuple(f"{p}:{c}" if c == k else f"{p}:{c}→{k}" for p, (c, k) in enumerate(zip(clean_str, corrupt_str)))


def check_direction(direction: str) -> None:
    if direction not in defaults.PATCH_DIRECTIONS:
        raise InterpError(
            "direction must be 'denoising' (patch clean activations into the corrupt run) or 'noising' "
            f"(corrupt into clean), got {direction!r}."
        )


def check_hooks(model, names: Sequence[str]) -> None:
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None:
        return
    missing = [name for name in names if name not in hook_dict]
    if missing:
        raise InterpError(
            f"this model has no hook {missing[0]!r} ({len(missing)} of {len(names)} hooks missing), "
            "so that site cannot be patched on it; choose another site."
        )


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def write_name(kind: str, layer: int) -> str:
    """The hook written to patch ``kind`` in ``layer`` (itself, except resid_mid: see WRITTEN_THROUGH)."""
    return site_name(WRITTEN_THROUGH.get(kind, kind), layer)


def extra_reads(kinds: Sequence[str], n_layers: int) -> list[str]:
    """What a written-through site needs read besides itself: resid_pre and attn_out of every layer."""
    if not any(kind in WRITTEN_THROUGH for kind in kinds):
        return []
    return [*layer_sites("resid_pre", n_layers), *layer_sites("attn_out", n_layers)]


def check_resid_mid(acts: Mapping[str, Tensor], n_layers: int) -> None:
    """Raise unless resid_mid = resid_pre + attn_out in every layer of a captured run (what writing through attn_out
    needs)."""
    for layer in range(n_layers):
        pre, attn_out, mid = (acts[site_name(kind, layer)] for kind in ("resid_pre", "attn_out", "resid_mid"))
        error = float((mid - pre - attn_out).abs().max())
        if not error <= TOLERANCE * max(1.0, float(mid.abs().max())):
            raise InterpError(
                f"on this model blocks.{layer}.hook_resid_mid is not hook_resid_pre + hook_attn_out "
                f"(off by {error:.3g}), so the residual stream between attention and MLP cannot be patched; "
                "patch resid_pre, attn_out or resid_post instead."
            )
