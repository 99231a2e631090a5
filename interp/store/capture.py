"""Run a model over prompts and capture hook sites at chosen positions: what a store writes, in memory.

``capture_activations`` keeps the result in memory; ``interp.store.cache_activations`` streams the
same batches to disk. Batches are right-padded and each prompt's own last token is read, so a
prompt's activations do not depend on what it was batched with.

Residual-stream sites (``resid_pre``, ``resid_post``) are read from a plain Hugging Face model that
shares the bridge's tensors (``interp.model.plain_view``) with forward hooks on its decoder layers, where
that gives the bridge's values: checked on two prompts of the first batch before it is used.
:class:`Capturer` says which ran (``path``) and why the bridge did (``reason``); a store records both.
"""

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from interp import defaults
from interp.data import Batch, PromptSet, iter_batches, pad_token_id, tokenize_prompts
from interp.errors import InterpError
from interp.model.internals import hook_aliases
from interp.model.plain_view import PlainViewCache, is_bridged, relative_error, tolerance
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
    fast: bool = True,
) -> dict[str, Tensor]:
    """The same activations ``cache_activations`` writes, kept in memory: ``{hook name: [prompt, ...]}``.

    For small prompt sets and analyses that run straight from a model. ``fast``: as ``cache_activations``'.
    """
    prompt_set = prompts if isinstance(prompts, PromptSet) else PromptSet.from_texts(list(prompts))
    hook_names = expand_sites(hooks, int(model.cfg.n_layers))
    check_model_has(model, hook_names)
    token_lists = tokenize_prompts(model, prompt_set)
    lengths = torch.tensor([len(ids) for ids in token_lists])
    position_spec = normalize_positions(positions, lengths)
    storage_dtype = resolve_storage_dtype(dtype, model)
    pieces: dict[str, list[Tensor]] = {name: [] for name in hook_names}
    capture = Capturer(
        model,
        hook_names,
        position_spec,
        int(lengths.max()),
        storage_dtype,
        n_batches=-(-len(token_lists) // batch_size),
        fast=fast,
    )
    with torch.inference_mode():
        for batch in iter_batches(token_lists, batch_size, pad_token_id(model)):
            captured = capture(batch)
            for name in hook_names:
                pieces[name].append(captured[name])
    return {name: torch.cat(parts) for name, parts in pieces.items()}


def check_model_has(model, hook_names: Sequence[str]) -> None:
    valid = set(model.hook_dict) | set(hook_aliases(model))
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
                f"use positions between {-shortest} and {shortest - 1}, or negative positions counted from each "
                "prompt's end."
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
            captured[name] = _select_positions(
                tensor, positions, last, batch.lengths.to(device), max_length, is_pattern
            ).to("cpu", dtype)
            if len(captured) == len(hook_names):
                raise _AllCaptured
            return tensor

        return hook

    with model.hooks(fwd_hooks=[(name, make_hook(name)) for name in hook_names]), contextlib.suppress(_AllCaptured):
        model(tokens, attention_mask=mask, return_type=None)
    missing = [name for name in hook_names if name not in captured]
    if missing:
        raise InterpError(
            f"the hooks {missing} never fired for this model; it may not compute them. Choose other sites."
        )
    return captured


PLAIN_SITES = {"resid_pre": "in", "resid_post": "out"}  # site kind -> what of the plain decoder layer it is
CHECK_TOKENS = 16  # positions of the two prompts the plain view is checked on


class Capturer:
    """Captures ``hook_names`` at ``positions`` from one batch at a time, through the plain view where it may.

    The path is chosen on the first batch: the plain view when every site is a residual-stream site,
    there is more than one batch (on one, the check would cost what it saves), ``fast`` is set, the
    view is not refused (``interp.model.plain_view``) and it captures the bridge's values on the shortest and
    the longest prompt of that batch; else the bridge (the view's refusals and disagreements warn).

    Attributes:
        path: ``"plain-view"`` or ``"bridge"`` once a batch ran ("" before).
        reason: why the bridge ran ("" when the plain view did).
    """

    def __init__(
        self,
        model,
        hook_names: Sequence[str],
        positions,
        max_length: int,
        dtype: torch.dtype,
        n_batches: int = 2,
        fast: bool = True,
    ):
        self.model, self.hook_names, self.positions, self.max_length, self.dtype = (
            model,
            list(hook_names),
            positions,
            max_length,
            dtype,
        )
        self.n_batches, self.fast = n_batches, fast
        self.path, self.reason = "", ""
        self._view: Any = None
        self._layers: list[torch.nn.Module] = []  # the plain view's decoder layers
        self._wanted: dict[tuple[int, str], list[str]] = {}  # (layer, "in" or "out") -> the hook names read there

    def __call__(self, batch, max_length: int | None = None) -> dict[str, Tensor]:
        """The sites of ``batch`` (position axes padded to ``max_length``, default the one given at construction)."""
        if not self.path:
            self.reason = self._why_not_plain(batch)
            self.path = "bridge" if self.reason else "plain-view"
        width = self.max_length if max_length is None else max_length
        if self.path == "plain-view":
            return self._plain(batch, width)
        return run_and_capture(self.model, batch, self.hook_names, self.positions, width, self.dtype)

    def _why_not_plain(self, batch) -> str:
        """ "" when the plain view may capture this run, else why not."""
        if not self.fast:
            return "fast=False"
        if self.n_batches < 2:
            return "one batch"
        sites = {name: parse_site(name) for name in self.hook_names}
        other = [name for name, site in sites.items() if site.kind not in PLAIN_SITES or site.layer is None]
        if other:
            return f"{other[0]} is not a residual-stream site"
        hf = getattr(self.model, "original_model", None)
        if hf is None or not is_bridged(hf):
            return "the model is not a TransformerBridge"
        views = PlainViewCache(hf, self.model)
        self._view, why = views.get(None)  # no logits check: the sites read are checked below
        if not why:
            try:
                self._layers = _decoder_layers(self._view, self.model)
            except (KeyError, AttributeError) as error:  # the view has no module where the bridge has a block
                kind = type(error).__name__
                why = f"the plain view has no decoder layer where the bridge has a block ({kind}: {error})"
        if not why:
            for name, site in sites.items():
                if site.layer is not None:  # every site here has one (checked above)
                    self._wanted.setdefault((int(site.layer), PLAIN_SITES[site.kind]), []).append(name)
            why = self._disagreement(batch)
        if why:
            views.warn_once(why, "caching runs")
            self._view = None
        return why

    def _disagreement(self, batch) -> str:
        """ "" when the plain view captures the bridge's values on a sample of ``batch``: the start of its
        longest prompt and of its shortest, right-padded (at most ``CHECK_TOKENS`` positions)."""
        sample = _check_sample(batch, self.positions)
        try:
            got = self._plain(sample, self.max_length)
        except Exception as error:
            return f"the plain view cannot capture these sites ({type(error).__name__}: {error})"
        want = run_and_capture(self.model, sample, self.hook_names, self.positions, self.max_length, self.dtype)
        limit = tolerance(self.dtype)
        for name in self.hook_names:
            difference = relative_error(got[name], want[name])
            if not difference <= limit:
                return (
                    f"the plain view's {name} differs from the bridge's by {difference:.2g} of its largest value "
                    f"(tolerance {limit:g})"
                )
        return ""

    def _plain(self, batch, max_length: int) -> dict[str, Tensor]:
        """Run ``batch`` through the plain view with hooks on its decoder layers; stop after the last one read."""
        device = self.model.cfg.device
        tokens, mask = batch.tokens.to(device), batch.attention_mask.to(device)
        last, lengths = (batch.lengths - 1).to(device), batch.lengths.to(device)
        captured: dict[str, Tensor] = {}

        def keep(key: tuple[int, str], hidden: Tensor) -> None:
            for name in self._wanted[key]:
                captured[name] = _select_positions(hidden, self.positions, last, lengths, max_length, False).to(
                    "cpu", self.dtype
                )
            if len(captured) == len(self.hook_names):
                raise _AllCaptured

        def pre_hook(layer: int):
            def hook(module, args, kwargs):
                keep((layer, "in"), args[0] if args else kwargs["hidden_states"])

            return hook

        def post_hook(layer: int):
            def hook(module, args, output):
                keep((layer, "out"), output[0] if isinstance(output, tuple) else output)

            return hook

        handles = [
            self._layers[layer].register_forward_pre_hook(pre_hook(layer), with_kwargs=True)
            for layer, side in self._wanted
            if side == "in"
        ]
        handles += [
            self._layers[layer].register_forward_hook(post_hook(layer)) for layer, side in self._wanted if side == "out"
        ]
        try:
            self._view(input_ids=tokens, attention_mask=mask, use_cache=False)
        except _AllCaptured:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in self.hook_names if name not in captured]
        if missing:
            raise InterpError(f"the plain view never reached {missing}; rerun with fast=False.")
        return captured


def _check_sample(batch: Batch, positions) -> Batch:
    """Two prompts of ``batch`` cut to ``CHECK_TOKENS`` positions (or past the largest explicit one): the
    longest, and the shortest right-padded."""
    longest, shortest = int(batch.lengths.argmax()), int(batch.lengths.argmin())
    explicit = [p for p in positions if p >= 0] if isinstance(positions, list) else []
    width = min(int(batch.lengths[longest]), max(CHECK_TOKENS, 1 + max(explicit, default=0)))
    rows = [longest, shortest] if shortest != longest else [longest]
    lengths = batch.lengths[rows].clamp(max=width)
    if len(rows) == 2 and int(lengths[1]) == width and width > 1:
        lengths[1] = width - 1  # keep one padded position in the sample
    mask = (torch.arange(width)[None, :] < lengths[:, None]).to(batch.attention_mask.dtype)
    return dataclasses.replace(
        batch, tokens=batch.tokens[rows, :width], attention_mask=mask, lengths=lengths, indices=()
    )


def _decoder_layers(view, bridge) -> list[torch.nn.Module]:
    """The plain view's decoder layers, found where the bridge's blocks sit in its Hugging Face model."""
    names = {id(module): name for name, module in bridge.original_model.named_modules()}
    return [view.get_submodule(names[id(block)]) for block in bridge.blocks]


def _select_positions(
    tensor: Tensor, positions, last: Tensor, lengths: Tensor, max_length: int, is_pattern: bool
) -> Tensor:
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
        index = torch.where(
            wanted[None, :] < 0, lengths[:, None] + wanted[None, :], wanted[None, :].expand(len(rows), -1)
        )
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
