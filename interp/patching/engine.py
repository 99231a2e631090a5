"""The batched engine: many patched cells per forward, each run only from where it can change anything.

Rows of a forward are ``(prompt copy)``: copy ``c`` carries cell ``c``'s patch. In fast mode a
forward starts at the cells' layer (the target run's residual is fed in) and position (earlier
positions come from the target run's KV cache); ``_Engine`` checks that against a plain forward
on first use, falls back where it differs, and times two forwards for the cost model that
``_plan`` uses to merge cells into chunks.
"""

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp import defaults
from interp.metrics import Metric, reduce_metric
from interp.model.shortcuts import Counted, last_position_mlp, restricted_unembed, shadowing, skipping_blocks
from interp.patching.inputs import TOLERANCE, model_device, write_name
from interp.sites import PATTERN_SITES, POSITION_SITES


def _capture(
    model, tokens: Int[Tensor, "prompt pos"], names: Sequence[str], with_kv: bool = False
) -> tuple[Tensor, dict[str, Tensor], Any]:
    """Logits, activations at ``names`` and (optionally) the KV cache of one unpatched run."""
    acts: dict[str, Tensor] = {}

    def make_hook(name: str) -> Callable:
        def hook(act: Tensor, hook: Any) -> None:
            acts[name] = act.detach()

        return hook

    hooks = [(name, make_hook(name)) for name in dict.fromkeys(names)]
    tokens = tokens.to(model_device(model))
    if with_kv:
        logits, cache = model.run_with_hooks(tokens, return_type="logits_and_cache", fwd_hooks=hooks)
    else:
        logits, cache = model.run_with_hooks(tokens, fwd_hooks=hooks), None
    return logits.detach(), acts, cache


MAX_COLUMN_FRACTION = 8  # restrict the unembedding only when the metric reads at most 1/8 of the vocabulary


def metric_columns(
    metric: Metric, logits: Float[Tensor, "prompt pos d_vocab"], value: float
) -> Int[Tensor, " column"] | None:
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
    except Exception:
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
        except Exception:
            return None
        if probed != value:
            return None
    return read.nonzero().flatten().cpu()


# Cells of these kinds at one position change the residual after their block at that position
# only, so their block can run for that one position and the rest of the model from the next
# block ("late start"). Keys and values (k, v) are read by later positions, so they cannot.
_LATE_START_KINDS = frozenset({"resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "pattern"})
_BEFORE_THE_MLP = (
    "hook_resid_pre",
    "attn.",
    "hook_attn_out",
)  # hooks of a block that see every position with its MLP trimmed
_WARNED_FALLBACKS: set[str] = set()  # fast-path fallback reasons already warned about in this process


def _warn_fallback(reason: str) -> None:
    """Warn (once per reason) that the fast path was expected but is not used."""
    if reason not in _WARNED_FALLBACKS:
        _WARNED_FALLBACKS.add(reason)
        warnings.warn(
            f"patching: skipping layers and positions does not work on this model ({reason}); "
            "using full batched forwards instead (same results, slower). result.fallback_reason records this.",
            stacklevel=5,
        )


def _kv_tensors(kv_cache: Any, n_layers: int) -> list[tuple[Tensor, Tensor]]:
    """Per layer, the keys and values ``[prompt, head, pos, d_head]`` of a captured transformers cache; raise if it was
    not written."""
    if kv_cache is None:
        raise RuntimeError("the unpatched run returned no KV cache")
    layers = getattr(kv_cache, "layers", None)
    if layers is None:
        raise RuntimeError(
            f"the unpatched run's KV cache is a {type(kv_cache).__name__} without per-layer .layers "
            "(a transformers Cache has them)"
        )
    if len(layers) != n_layers:
        raise RuntimeError(f"the unpatched run's KV cache has {len(layers)} layers but the model {n_layers}")
    for layer, cached in enumerate(layers):
        if getattr(cached, "keys", None) is None or getattr(cached, "values", None) is None:
            raise RuntimeError(
                f"layer {layer} of the unpatched run's KV cache holds no keys/values: "
                "attention did not write the cache (see interp.model.compat)"
            )
    return [(cached.keys, cached.values) for cached in layers]


class _Engine:
    """Re-runs the target run from (start layer, start position) for many patched copies at once.

    Rows are ``(prompt copy)``: copy ``c`` of every prompt carries cell ``c``'s patch. In fast
    mode blocks before the start layer are skipped (the target run's residual is fed in) and
    positions before the start position come from the target run's KV cache. With
    ``last_logits`` only the final position is unembedded (the metric reads nothing else); then
    in fast mode, where they reproduce the plain forward, only the vocabulary ``columns`` the
    metric reads are unembedded and the last block's MLP runs at the last position only
    (``interp.model.shortcuts``). ``fallback`` says why fast mode was refused ("" when it runs
    or was not asked for); ``ran`` names the shortcuts patched forwards used.
    """

    def __init__(
        self,
        model,
        tokens: Int[Tensor, "prompt pos"],
        logits: Float[Tensor, "prompt pos d_vocab"],
        resid: list[Tensor],
        kv_cache: Any,
        fast: bool,
        last_logits: bool,
        columns: Tensor | None = None,
    ):
        self.model = model
        self.tokens = tokens.to(model_device(model))
        self.logits = logits
        self.resid = resid
        self.n_prompts, self.n_pos = tokens.shape
        self.n_layers = int(model.cfg.n_layers)
        self.kv: list[tuple[Tensor, Tensor]] | None = None
        self.keep = {"logits_to_keep": 1} if last_logits and self._keeps_last_logits() else {}
        self.fast = False
        self.late = False
        self.fallback = ""
        self.columns: Tensor | None = None  # the vocabulary columns unembedded (None: all)
        self.unembed_fn: Counted | None = None  # set where the metric_columns shortcut reproduces the plain forward
        self.mlp_fn: Counted | None = None  # set where the last_block_mlp shortcut does
        self.ran: set[str] = set()
        # cost of one forward = layers run * overhead + FLOPs * seconds_per_flop (calibrated in _try_fast_path)
        self.overhead, self.seconds_per_flop = 1.0, 1e-12
        if fast:
            self._try_fast_path(kv_cache, columns)
        self.ran = {"last_position_logits"} if self.keep else set()  # what the self-checks ran does not count

    # ---- forwards ---------------------------------------------------------------------------------
    def forward(
        self, start_layer: int, start_pos: int, copies: int, hooks: list
    ) -> Float[Tensor, "row suffix d_vocab"]:
        """Logits of ``copies`` copies of the target run with ``hooks``: the positions from ``offset`` on (see
        ``suffix``)."""
        if not self.fast:
            tokens = einops.repeat(self.tokens, "prompt pos -> (prompt copy) pos", copy=copies)
            return self.model.run_with_hooks(tokens, fwd_hooks=hooks, **self.keep)
        resid = einops.repeat(
            self.resid[start_layer][:, start_pos:], "prompt pos d_model -> (prompt copy) pos d_model", copy=copies
        )
        return self._run(resid, start_layer, start_pos, copies, hooks, **self.keep)

    def block_output(self, layer: int, pos: int, copies: int, hooks: list) -> Float[Tensor, "row d_model"]:
        """The residual after block ``layer`` at position ``pos`` only, with ``hooks`` (fast mode)."""
        resid = einops.repeat(
            self.resid[layer][:, pos : pos + 1], "prompt pos d_model -> (prompt copy) pos d_model", copy=copies
        )
        return self._run(resid, layer, pos, copies, hooks, stop_at_layer=layer + 1)[:, 0]

    def forward_residual(
        self, layer: int, pos: int, copies: int, first: Float[Tensor, "row d_model"]
    ) -> Float[Tensor, "row suffix d_vocab"]:
        """Logits from block ``layer`` on, with each row's residual at ``pos`` replaced by ``first`` (fast mode)."""
        resid = einops.repeat(
            self.resid[layer][:, pos:], "prompt pos d_model -> (prompt copy) pos d_model", copy=copies
        ).clone()
        resid[:, 0] = first.to(resid.dtype)
        self.ran.add("late_start")
        return self._run(resid, layer, pos, copies, [], **self.keep)

    def _run(self, resid: Tensor, layer: int, pos: int, copies: int, hooks: list, **kwargs: Any) -> Tensor:
        cache = self._prefix_cache(pos, copies) if pos > 0 else None
        shortcuts = self._shortcuts(hooks, kwargs)
        calls = {name: fn.calls for name, (_, fn) in shortcuts.items()}
        with skipping_blocks(self.model, layer), shadowing(list(shortcuts.values())):
            logits = self.model.run_with_hooks(
                resid, start_at_layer=layer, past_key_values=cache, fwd_hooks=hooks, **kwargs
            )
        self.ran.update(name for name, (_, fn) in shortcuts.items() if fn.calls > calls[name])
        return logits

    def _shortcuts(self, hooks: list, kwargs: dict) -> dict[str, tuple[Any, Counted]]:
        """The shortcuts a forward to the logits can take: the last block's MLP only if every hook in that block comes
        before it."""
        if "stop_at_layer" in kwargs or not self.keep:
            return {}
        found = {}
        if self.unembed_fn is not None:
            found["metric_columns"] = (self.model.unembed, self.unembed_fn)
        last = f"blocks.{self.n_layers - 1}."
        before_mlp = [
            isinstance(name, str) and (not name.startswith(last) or name[len(last) :].startswith(_BEFORE_THE_MLP))
            for name, _ in hooks
        ]
        if self.mlp_fn is not None and all(before_mlp):
            found["last_block_mlp"] = (self.model.blocks[-1].mlp, self.mlp_fn)
        return found

    def _prefix_cache(self, length: int, copies: int):
        from transformers import DynamicCache

        config = getattr(getattr(self.model, "original_model", None), "config", None)
        cache = DynamicCache(config=config) if config is not None else DynamicCache()
        assert self.kv is not None  # set with the fast path, the only one that runs from a prefix
        for layer, (keys, values) in enumerate(self.kv):
            cache.update(
                einops.repeat(
                    keys[:, :, :length], "prompt head pos d_head -> (prompt copy) head pos d_head", copy=copies
                ),
                einops.repeat(
                    values[:, :, :length], "prompt head pos d_head -> (prompt copy) head pos d_head", copy=copies
                ),
                layer,
            )
        return cache

    def first_position(self, start_pos: int) -> int:
        """The first position a forward from ``start_pos`` runs (0 unless in fast mode)."""
        return start_pos if self.fast else 0

    def logits_from(self, start_pos: int) -> int:
        """The first position whose logits a forward from ``start_pos`` returns."""
        return self.n_pos - 1 if self.keep else self.first_position(start_pos)

    # ---- self-checks and cost model ----------------------------------------------------------------
    def _keeps_last_logits(self) -> bool:
        """Whether the model honours ``logits_to_keep=1`` (Hugging Face models do), on a two-token probe."""
        try:
            with torch.no_grad():
                logits = self.model.run_with_hooks(self.tokens[:1, :2], fwd_hooks=[], logits_to_keep=1)
            return tuple(logits.shape[:2]) == (1, 1)
        except Exception:
            return False

    def _try_fast_path(self, kv_cache: Any, columns: Tensor | None) -> None:
        """Use the fast path only where it reproduces the target run (else say why in ``fallback``, and warn); time it
        for the cost model."""
        layer, pos = self.n_layers // 2, self.n_pos // 2
        try:
            if not hasattr(self.model, "blocks"):
                raise RuntimeError("the model has no .blocks to skip")
            self.kv = _kv_tensors(kv_cache, self.n_layers)
            self.fast = True
            self._expect_logits(self.forward(layer, pos, 1, []), pos)
        except Exception as error:
            self.fast, self.kv = False, None
            self.fallback = f"{type(error).__name__}: {error}"
            _warn_fallback(self.fallback)
            return
        if self.keep:
            self._try_shortcuts(layer, columns)
        self._calibrate()
        if self.n_layers > 1:
            try:
                late_layer = min(layer, self.n_layers - 2)
                residual = self.block_output(late_layer, pos, 1, [])
                self._expect_close(residual, self.resid[late_layer + 1][:, pos], "residual")
                self._expect_logits(self.forward_residual(late_layer + 1, pos, 1, residual), pos)
                self.late = True
            except Exception:
                self.late = False

    def _try_shortcuts(self, layer: int, columns: Tensor | None) -> None:
        """Keep each shortcut only if a forward from ``layer`` over every position runs it and gives the plain forward's
        logits where the metric reads them."""
        try:
            self.mlp_fn = last_position_mlp(self.model.blocks[-1].mlp)
            self._expect_logits(self.forward(layer, 0, 1, []), 0)
            if self.mlp_fn.calls == 0:
                raise RuntimeError("the last block's MLP was not called")
        except Exception:
            self.mlp_fn = None
        if columns is None:
            return
        try:
            self.unembed_fn, self.columns = restricted_unembed(self.model.unembed, columns), columns
            self._expect_logits(self.forward(layer, 0, 1, []), 0)
            if self.unembed_fn.calls == 0:
                raise RuntimeError("the unembedding was not called")
        except Exception:
            self.unembed_fn, self.columns = None, None

    def _expect_logits(self, got: Tensor, start_pos: int) -> None:
        """Raise unless ``got`` are the target run's logits from ``start_pos``'s first logit position on (in the columns
        unembedded)."""
        expected = self.logits[:, self.logits_from(start_pos) :]
        if self.columns is not None and got.shape == expected.shape:
            got, expected = got[..., self.columns], expected[..., self.columns]
        self._expect_close(got, expected, "logits")

    def _expect_close(self, got: Tensor, expected: Tensor, what: str) -> None:
        error = float((got - expected).abs().max()) if got.shape == expected.shape else math.inf
        if not error <= TOLERANCE * max(1.0, float(expected.abs().max())):
            raise RuntimeError(
                f"{what} differ from the plain forward by {error:.3g} "
                f"(shapes {tuple(got.shape)} vs {tuple(expected.shape)})"
            )

    def flops(self, rows: int, start_layer: int, start_pos: int) -> float:
        """Multiply-adds x 2 of one forward from (start layer, start position): blocks plus unembedding."""
        cfg = self.model.cfg
        d_model, d_head, n_heads = int(cfg.d_model), int(cfg.d_head), int(cfg.n_heads)
        n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
        d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * d_model)
        per_token = (
            d_model * d_head * (2 * n_heads + 2 * n_kv)
            + (3 if getattr(cfg, "gated_mlp", False) else 2) * d_model * d_mlp
        )
        per_token += 2 * n_heads * d_head * self.n_pos  # attention scores and mixing over the context
        positions = self.n_pos - start_pos
        unembedded = 1 if self.keep else positions
        vocab = len(self.columns) if self.columns is not None else int(cfg.d_vocab)
        trimmed = (
            (positions - 1) * (3 if getattr(cfg, "gated_mlp", False) else 2) * d_model * d_mlp
            if self.mlp_fn is not None
            else 0
        )
        return (
            2.0
            * rows
            * ((self.n_layers - start_layer) * positions * per_token - trimmed + unembedded * d_model * vocab)
        )

    def _calibrate(self) -> None:
        """Per-layer overhead and seconds per FLOP from two timed forwards: one layer over every
        position (mostly arithmetic) and every layer at the last position (mostly overhead)."""
        runs = [(1, self.n_layers - 1, 0), (self.n_layers, 0, self.n_pos - 1)]
        timed = []
        for layers, start_layer, start_pos in runs:
            started = time.perf_counter()
            self.forward(start_layer, start_pos, 1, [])
            timed.append((layers, self.flops(self.n_prompts, start_layer, start_pos), time.perf_counter() - started))
        (l_heavy, w_heavy, t_heavy), (l_light, w_light, t_light) = timed
        # t = layers * overhead + flops * seconds_per_flop, solved for the two runs
        denominator = l_light * w_heavy - l_heavy * w_light
        overhead = (t_light * w_heavy - t_heavy * w_light) / denominator if denominator > 0 else 0.0
        self.overhead = min(max(overhead, 0.0), t_light / l_light)
        self.seconds_per_flop = max(t_heavy - l_heavy * self.overhead, 0.1 * t_heavy) / w_heavy

    def cost(self, rows: int, start_layer: int, start_pos: int) -> float:
        """Estimated seconds of one forward of ``rows`` rows from (start layer, start position)."""
        if not self.fast:
            start_layer, start_pos = 0, 0  # every forward is a full one
        return (self.n_layers - start_layer) * self.overhead + self.flops(
            rows, start_layer, start_pos
        ) * self.seconds_per_flop


@dataclass(frozen=True)
class _Cell:
    index: tuple[int, ...]  # into the values tensor
    layer: int
    pos: int | None  # None: every position
    head: int | None  # None: no head axis
    start: int  # first position where source and target differ within the cell


@dataclass(frozen=True)
class _Chunk:
    layer: int  # first block to run
    start: int  # first position to run
    cells: tuple[_Cell, ...]
    late: bool  # run the cells' own block at one position, then the rest from the next block


def _differences(kind: str, source: Tensor, target: Tensor) -> Bool[Tensor, "..."]:
    """Where source and target activations differ: ``[pos]`` or ``[pos, head]``."""
    differ = source != target
    if kind in POSITION_SITES:  # [prompt, pos, d_model]
        return differ.any(dim=2).any(dim=0)
    if kind in PATTERN_SITES:  # [prompt, head, query_pos, key_pos]
        return einops.rearrange(differ.any(dim=3).any(dim=0), "head pos -> pos head")
    return differ.any(dim=3).any(dim=0)  # [prompt, pos, head, d_head]


def _cells(kind: str, by_position: bool, differences: list[Tensor]) -> tuple[tuple[int, ...], list[_Cell]]:
    """The grid shape and the cells that can change anything (the rest equal the baseline)."""
    n_layers = len(differences)
    cells: list[_Cell] = []
    if kind in POSITION_SITES:
        n_pos = differences[0].shape[0]
        shape: tuple[int, ...] = (n_layers, n_pos) if by_position else (n_layers,)
        for layer, differ in enumerate(differences):
            changed = differ.nonzero().flatten().tolist()
            if by_position:
                cells.extend(_Cell((layer, pos), layer, pos, None, pos) for pos in changed)
            elif changed:
                cells.append(_Cell((layer,), layer, None, None, changed[0]))
        return shape, cells
    n_pos, n_heads = differences[0].shape
    shape = (n_layers, n_pos, n_heads) if by_position else (n_layers, n_heads)
    for layer, differ in enumerate(differences):
        if by_position:
            for pos, head in differ.nonzero().tolist():
                cells.append(_Cell((layer, pos, head), layer, pos, head, pos))
        else:
            for head in range(n_heads):
                rows = differ[:, head].nonzero().flatten()
                if rows.numel():
                    cells.append(_Cell((layer, head), layer, None, head, int(rows[0])))
    return shape, cells


def _plan(kind: str, cells: list[_Cell], engine: _Engine, max_cells: int) -> list[_Chunk]:
    """Chunks of cells: exact (layer, start) groups, neighbours merged while the cost model says it is cheaper."""
    groups: dict[tuple[int, int, bool], list[_Cell]] = {}
    for cell in cells:
        late = engine.late and kind in _LATE_START_KINDS and cell.pos is not None and cell.layer < engine.n_layers - 1
        key = (cell.layer, cell.start, late) if engine.fast else (0, 0, False)
        groups.setdefault(key, []).append(cell)
    n = engine.n_prompts
    chunks: list[_Chunk] = []
    for (layer, start, late), members in sorted(groups.items()):
        for begin in range(0, len(members), max_cells):
            piece = tuple(members[begin : begin + max_cells])
            previous = chunks[-1] if chunks else None
            if (
                previous is not None
                and not late
                and not previous.late
                and len(previous.cells) + len(piece) <= max_cells
            ):
                merged_layer, merged_start = min(layer, previous.layer), min(start, previous.start)
                together = engine.cost(n * (len(previous.cells) + len(piece)), merged_layer, merged_start)
                apart = engine.cost(n * len(previous.cells), previous.layer, previous.start) + engine.cost(
                    n * len(piece), layer, start
                )
                if together <= apart:
                    chunks[-1] = _Chunk(merged_layer, merged_start, previous.cells + piece, False)
                    continue
            chunks.append(_Chunk(layer, start, piece, late))
    return chunks


def _splice_hook(source: Tensor, mask: Bool[Tensor, "..."], copies: int) -> Callable:
    """A hook that writes ``source`` into the masked entries of each copy's rows (rows are ``(prompt copy)``)."""
    source = source.unsqueeze(1)  # [prompt, 1, ...]

    def hook(act: Tensor, hook: Any) -> Tensor:
        view = einops.rearrange(act, "(prompt copy) ... -> prompt copy ...", copy=copies)
        expanded = mask.reshape(1, *mask.shape, *([1] * (view.ndim - mask.ndim - 1)))
        patched = torch.where(expanded, source.to(view.dtype), view)
        return einops.rearrange(patched, "prompt copy ... -> (prompt copy) ...")

    return hook


def _chunk_hooks(
    kind: str, cells: Sequence[_Cell], sources: list[Tensor], offset: int, length: int
) -> list[tuple[str, Callable]]:
    """One splice hook per layer in the chunk for a forward over positions ``offset:offset+length``."""
    copies = len(cells)
    window = slice(offset, offset + length)
    by_layer: dict[int, list[tuple[int, _Cell]]] = {}
    for copy, cell in enumerate(cells):
        by_layer.setdefault(cell.layer, []).append((copy, cell))
    hooks = []
    for layer, members in by_layer.items():
        source = sources[layer]
        if kind in POSITION_SITES:  # [prompt, pos, d_model]
            mask = torch.zeros(copies, length, dtype=torch.bool)
            for copy, cell in members:
                mask[copy, (cell.pos - offset) if cell.pos is not None else slice(None)] = True
            source = source[:, window]
        elif kind in PATTERN_SITES:  # [prompt, head, query_pos, key_pos]: keys run up to the last query
            mask = torch.zeros(copies, source.shape[1], length, dtype=torch.bool)
            for copy, cell in members:
                mask[copy, cell.head, (cell.pos - offset) if cell.pos is not None else slice(None)] = True
            source = source[:, :, window, : offset + length]
        else:  # [prompt, pos, head, d_head]
            mask = torch.zeros(copies, length, source.shape[2], dtype=torch.bool)
            for copy, cell in members:
                mask[copy, (cell.pos - offset) if cell.pos is not None else slice(None), cell.head] = True
            source = source[:, window]
        hooks.append((write_name(kind, layer), _splice_hook(source, mask.to(source.device), copies)))
    return hooks


def _run_chunk(
    kind: str, chunk: _Chunk, engine: _Engine, sources: list[Tensor]
) -> Float[Tensor, "copy prompt suffix d_vocab"]:
    """The logits of every copy of one chunk, from position ``engine.logits_from(chunk.start)`` on."""
    copies = len(chunk.cells)
    if chunk.late:
        if kind == "resid_post":  # the patched residual entering the next block is the source itself
            first = einops.repeat(
                sources[chunk.layer][:, chunk.start], "prompt d_model -> (prompt copy) d_model", copy=copies
            )
        else:
            hooks = _chunk_hooks(kind, chunk.cells, sources, chunk.start, 1)
            first = engine.block_output(chunk.layer, chunk.start, copies, hooks)
        logits = engine.forward_residual(chunk.layer + 1, chunk.start, copies, first)
    else:
        first_position = engine.first_position(chunk.start)
        hooks = _chunk_hooks(kind, chunk.cells, sources, first_position, engine.n_pos - first_position)
        logits = engine.forward(chunk.layer, chunk.start, copies, hooks)
    return einops.rearrange(logits, "(prompt copy) pos d_vocab -> copy prompt pos d_vocab", copy=copies)


def _reads_last_position_only(metric: Metric, logits: Float[Tensor, "prompt pos d_vocab"], value: float) -> bool:
    """Whether ``metric`` ignores every position but the last: its value stays the same when they hold NaN or noise."""
    if logits.shape[1] < 2:
        return False
    generator = torch.Generator(device=logits.device).manual_seed(0)
    for filler in (
        torch.full_like(logits[:, :-1], math.nan),
        torch.randn(logits[:, :-1].shape, generator=generator, device=logits.device, dtype=logits.dtype),
    ):
        try:
            probed = float(reduce_metric(metric, torch.cat([filler, logits[:, -1:]], dim=1)))
        except Exception:
            return False
        if probed != value:
            return False
    return True


def default_max_rows(model, n_prompts: int, n_pos: int, logit_positions: int) -> int:
    """Rows per forward that fit a 1 GiB budget: logits, residual-sized activations and attention patterns."""
    cfg = model.cfg
    per_row = 4 * (
        2 * logit_positions * int(cfg.d_vocab) + n_pos * (16 * int(cfg.d_model) + 3 * int(cfg.n_heads) * n_pos)
    )
    return int(min(4096, max(n_prompts, defaults.PATCH_MEMORY_BUDGET_BYTES // max(1, per_row))))
