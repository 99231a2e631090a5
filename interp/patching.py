"""Activation patching and attribution patching, many cells per forward pass.

Activation patching asks which activation carries a behaviour: run the model on one input
(the *target* run), splice in one activation from another input (the *source* run), and see
how far a metric moves. ``denoising`` patches clean activations into the corrupt run (does
this cell restore the behaviour?); ``noising`` patches corrupt activations into the clean run
(does this cell break it?). A *cell* is one (layer[, position][, head]) of a site.

``transformer_lens.patching`` runs one full forward per cell. Here many cells share one
batched forward (``n_cells x n_prompts`` rows, each cell's patch confined to its own rows), and
a cell is run only from where it can change anything: from its layer (earlier blocks are
skipped and the target run's residual is fed in) and from its position (earlier positions are
causally unchanged: their keys and values come from the target run's KV cache, their logits
from the target run). A cell whose source and target activations are identical (e.g. positions
before the first token where clean and corrupt differ) is not run at all: it equals the
unpatched metric. The fast path checks itself against a plain forward on first use and falls
back to full batched forwards where an architecture does not support it.

Patches land where the model goes on with them: ``resid_mid`` is written through ``attn_out``
(TransformerBridge's ``hook_resid_mid`` is the MLP's input only, so writing it would leave the
residual that bypasses the MLP unpatched), and attribution takes its gradients at a zero added to
each hook's output (the tensor a bridge's q/k/v/z hook receives carries no gradient).

Metric contract: ``metric(logits)`` gets the logits ``[n_prompts, pos, d_vocab]`` of one
patched cell and returns a scalar, or one value per prompt, which is averaged (see
``interp.metrics``). The value of a cell is that scalar. All prompts must tokenize to the same
length (positions are compared across prompts), and each corrupt prompt to the same length as
its clean prompt.

>>> from interp.metrics import logit_diff                                            # doctest: +SKIP
>>> metric = logit_diff(" mary", " john", tokenizer=model.tokenizer)                # doctest: +SKIP
>>> result = activation_patching(model, clean, corrupt, metric, site="resid_pre")   # doctest: +SKIP
>>> result.values.shape, result.axes                                              # doctest: +SKIP
(torch.Size([12, 16]), ('layer', 'pos'))
>>> result.figure().show(); result.save("patch/resid_pre")                        # doctest: +SKIP
>>> heads = attribution_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)  # doctest: +SKIP
"""

import argparse
import contextlib
import csv
import difflib
import io
import itertools
import json
import math
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import einops
import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm

from interp.data import PromptSet, tokenize_prompts
from interp.errors import InterpError
from interp.io import atomic_write_json, atomic_write_safetensors, atomic_write_text
from interp.metrics import Metric, metric_name, reduce_metric
from interp.provenance import Provenance, hash_json, weights_hash
from interp.sites import PATTERN_SITES, layer_sites, site_name

Direction = Literal["denoising", "noising"]
Method = Literal["activation", "attribution"]
DIRECTIONS = ("denoising", "noising")
METHODS = ("activation", "attribution")
FORMAT = "interp.patching_result"
FORMAT_VERSION = 1

# Patching targets -> the site kinds of interp.sites that hold them. Site kinds themselves
# ("z", "v", "pattern", ...) are accepted too.
PATCH_SITES: dict[str, str] = {
    "resid_pre": "resid_pre",
    "resid_mid": "resid_mid",
    "resid_post": "resid_post",
    "attn_out": "attn_out",
    "mlp_out": "mlp_out",
    "attn_head_out": "z",
    "attn_head_value": "v",
    "attn_head_pattern": "pattern",
    "attn_head_query": "q",
    "attn_head_key": "k",
}
_KIND_TO_SITE = {kind: name for name, kind in PATCH_SITES.items()}
_POSITION_KINDS = frozenset({"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"})
_PATCHABLE_KINDS = _POSITION_KINDS | {"z", "v", "q", "k", "pattern"}
ALL_SITES: tuple[str, ...] = tuple(PATCH_SITES)
RESULT_FILES = ("result.json", "values.safetensors", "cells.csv", "figure.html")
_MEMORY_BUDGET_BYTES = 1 << 30
_FAST_PATH_TOLERANCE = 1e-4

# TransformerBridge's hook_resid_mid is the MLP's input (ln2.hook_in): a write there changes what
# the MLP reads but not the residual stream that bypasses the MLP. So resid_mid is written through
# attn_out (resid_mid = resid_pre + attn_out, checked on every run): attn_out := source - resid_pre.
_WRITTEN_THROUGH = {"resid_mid": "attn_out"}


# ---- sites ---------------------------------------------------------------------------------------


def resolve_site(site: str) -> str:
    """The interp.sites kind a patching site names: ``resolve_site("attn_head_out") == "z"``."""
    name = str(site).strip()
    if name in PATCH_SITES:
        return PATCH_SITES[name]
    if name in _PATCHABLE_KINDS:
        return name
    candidates = list(PATCH_SITES) + sorted(_PATCHABLE_KINDS)
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise InterpError(f"unknown patching site {site!r}.{hint} Patchable sites: {', '.join(PATCH_SITES)} (or the site kinds {', '.join(sorted(_PATCHABLE_KINDS))}).")


def site_label(kind: str) -> str:
    """The patching name of a site kind (``"z"`` -> ``"attn_head_out"``)."""
    return _KIND_TO_SITE.get(kind, kind)


def _axes(kind: str, by_position: bool) -> tuple[str, ...]:
    if kind in _POSITION_KINDS:
        return ("layer", "pos") if by_position else ("layer",)
    return ("layer", "pos", "head") if by_position else ("layer", "head")


# ---- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One patched cell: its index into ``values``, a readable label, the value and its effect."""

    index: tuple[int, ...]
    label: str
    value: float
    effect: float


@dataclass(frozen=True, eq=False)
class PatchingResult:
    """Patching values over labelled axes, with both runs' baselines and provenance.

    Attributes:
        values: the metric with each cell patched (attribution: its linear estimate), with axes
            ``axes``: ("layer",), ("layer", "pos"), ("layer", "head") or ("layer", "pos", "head").
        labels: per axis, one label per index (positions: ``"3:fox"``, or ``"3:fox→dog"`` where
            the corrupt token differs; heads: ``"H2"``, or ``"KV1"`` for grouped key/value heads).
        site: the patching site ("resid_pre", "attn_head_out", ...); ``hook_names`` its hooks.
        method: "activation" or "attribution"; direction: "denoising" or "noising".
        clean_metric / corrupt_metric: the metric on the unpatched clean and corrupt runs.
        clean_tokens / corrupt_tokens: the first prompt pair's token strings (hover text).
        fast_path: whether activation patching skipped the layers and positions a cell cannot
            change (True), or ran full batched forwards (False: same values, slower); None where
            it does not apply (attribution) or was not recorded (saved by an older interp).
        fallback_reason: why the fast path was not used ("" unless ``fast_path`` is False).
    """

    values: Float[Tensor, "..."]
    axes: tuple[str, ...]
    labels: Mapping[str, tuple[str, ...]]
    site: str
    hook_names: tuple[str, ...]
    method: Method
    direction: Direction
    metric_name: str
    clean_metric: float
    corrupt_metric: float
    clean_tokens: tuple[str, ...]
    corrupt_tokens: tuple[str, ...]
    n_prompts: int
    provenance: Provenance
    fast_path: bool | None = None
    fallback_reason: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InterpError(f"method must be one of {METHODS}, got {self.method!r}.")
        if self.direction not in DIRECTIONS:
            raise InterpError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}.")
        if not self.axes or self.axes[0] != "layer" or not set(self.axes) <= {"layer", "pos", "head"}:
            raise InterpError(f"axes must start with 'layer' and use only layer/pos/head, got {self.axes}.")
        if self.values.ndim != len(self.axes):
            raise InterpError(f"values have {self.values.ndim} dimensions {tuple(self.values.shape)} but the axes are {self.axes}.")
        for axis, size in zip(self.axes, self.values.shape):
            labels = self.labels.get(axis)
            if labels is None or len(labels) != size:
                raise InterpError(f"axis {axis!r} has {size} entries but {0 if labels is None else len(labels)} labels.")
        if len(self.clean_tokens) != len(self.corrupt_tokens):
            raise InterpError(f"clean_tokens ({len(self.clean_tokens)}) and corrupt_tokens ({len(self.corrupt_tokens)}) differ in length.")
        if (self.fast_path is False) != bool(self.fallback_reason):
            raise InterpError(f"fallback_reason says why the fast path was not used, so it is given exactly when fast_path is False; got fast_path={self.fast_path!r}, fallback_reason={self.fallback_reason!r}.")

    # ---- derived values --------------------------------------------------------------------------
    @property
    def baseline(self) -> float:
        """The unpatched metric of the target run: corrupt for denoising, clean for noising."""
        return self.corrupt_metric if self.direction == "denoising" else self.clean_metric

    @property
    def effect(self) -> Float[Tensor, "..."]:
        """``values - baseline``: how far patching each cell moves the metric."""
        return self.values - self.baseline

    def normalized(self) -> "PatchingResult":
        """Values rescaled so the corrupt run is 0 and the clean run 1 (fraction of the behaviour restored)."""
        span = self.clean_metric - self.corrupt_metric
        if span == 0 or not math.isfinite(span):
            raise InterpError(f"{self.metric_name} is {self.clean_metric:.6g} on the clean and {self.corrupt_metric:.6g} on the corrupt run; there is nothing to normalize by.")
        return replace(self, values=(self.values - self.corrupt_metric) / span, metric_name=f"normalized {self.metric_name}", clean_metric=1.0, corrupt_metric=0.0)

    def cell_label(self, index: Sequence[int]) -> str:
        """``"L3H2 @ 5:fox"``-style label of one cell."""
        parts = dict(zip(self.axes, index))
        text = f"L{parts['layer']}"
        if "head" in parts:
            text += self.labels["head"][parts["head"]]
        if "pos" in parts:
            text += f" @ {self.labels['pos'][parts['pos']]}"
        return text

    def top(self, k: int = 10) -> tuple[Cell, ...]:
        """The ``k`` cells with the largest ``|effect|``, most important first."""
        effect = self.effect.detach().float().cpu()
        order = torch.argsort(effect.reshape(-1).abs(), descending=True, stable=True)[: max(0, int(k))]
        cells = []
        for flat in order.tolist():
            index = tuple(int(i) for i in np.unravel_index(flat, tuple(effect.shape)))
            cells.append(Cell(index, self.cell_label(index), float(self.values[index]), float(effect[index])))
        return tuple(cells)

    # ---- figure -----------------------------------------------------------------------------------
    def figure(self):
        """Plotly figure: a heatmap centred at the unpatched metric (a line plot for per-layer values)."""
        from interp.plots import diverging_heatmap, line_plot

        values = self.values.detach().float().cpu().numpy()
        effect = values - self.baseline
        title = (
            f"{self.method} patching, {self.direction}: {self.site} — {self.metric_name}"
            f"<br><sup>clean {self.clean_metric:.4g}, corrupt {self.corrupt_metric:.4g}, {self.n_prompts} prompt(s); colour = change from the unpatched {'corrupt' if self.direction == 'denoising' else 'clean'} run</sup>"
        )
        layers = [f"L{i}" for i in range(values.shape[0])]
        if self.axes == ("layer",):
            hover = [f"layer {i}<br>{self.metric_name}: {v:.4g}<br>effect: {e:+.4g}" for i, (v, e) in enumerate(zip(values, effect))]
            return line_plot(layers, {self.metric_name: values.tolist()}, hover, title, "layer", self.metric_name, {"clean": self.clean_metric, "corrupt": self.corrupt_metric})
        if self.axes == ("layer", "head"):
            heads = self.labels["head"]
            hover = [[f"L{l}{heads[h]}<br>{self.metric_name}: {values[l, h]:.4g}<br>effect: {effect[l, h]:+.4g}" for h in range(len(heads))] for l in range(len(layers))]
            return diverging_heatmap(values, heads, layers, hover, title, "head", "layer", self.metric_name, self.baseline)
        positions = self.labels["pos"]
        if self.axes == ("layer", "pos"):
            hover = [[f"layer {l}<br>{self._position_hover(p)}<br>{self.metric_name}: {values[l, p]:.4g}<br>effect: {effect[l, p]:+.4g}" for p in range(len(positions))] for l in range(len(layers))]
            return diverging_heatmap(values, positions, layers, hover, title, "position: token", "layer", self.metric_name, self.baseline)
        heads = self.labels["head"]
        rows = einops.rearrange(values, "layer pos head -> (layer head) pos")
        row_effect = rows - self.baseline
        row_labels = [f"L{l}{heads[h]}" for l in range(len(layers)) for h in range(len(heads))]
        hover = [[f"{row_labels[r]}<br>{self._position_hover(p)}<br>{self.metric_name}: {rows[r, p]:.4g}<br>effect: {row_effect[r, p]:+.4g}" for p in range(len(positions))] for r in range(len(row_labels))]
        return diverging_heatmap(rows, positions, row_labels, hover, title, "position: token", "layer and head", self.metric_name, self.baseline)

    def _position_hover(self, pos: int) -> str:
        clean, corrupt = self.clean_tokens[pos], self.corrupt_tokens[pos]
        same = " (same)" if clean == corrupt else ""
        return f"pos {pos}: clean {clean!r} / corrupt {corrupt!r}{same}"

    # ---- disk -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything but the values, as JSON-ready data."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "axes": list(self.axes),
            "shape": list(self.values.shape),
            "labels": {axis: list(labels) for axis, labels in self.labels.items()},
            "site": self.site,
            "hook_names": list(self.hook_names),
            "method": self.method,
            "direction": self.direction,
            "metric_name": self.metric_name,
            "clean_metric": self.clean_metric,
            "corrupt_metric": self.corrupt_metric,
            "clean_tokens": list(self.clean_tokens),
            "corrupt_tokens": list(self.corrupt_tokens),
            "n_prompts": self.n_prompts,
            "provenance": self.provenance.to_dict(),
            "fast_path": self.fast_path,
            "fallback_reason": self.fallback_reason,
        }

    def cells_csv(self) -> str:
        """One row per cell: axis indices and labels, value, effect."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        header = [*self.axes, *[f"{axis}_label" for axis in self.axes], "cell", "value", "effect"]
        writer.writerow(header)
        values = self.values.detach().float().cpu()
        for index in itertools.product(*(range(size) for size in values.shape)):
            value = float(values[index])
            labels = [self.labels[axis][i] for axis, i in zip(self.axes, index)]
            writer.writerow([*index, *labels, self.cell_label(index), repr(value), repr(value - self.baseline)])
        return buffer.getvalue()

    def save(self, directory: str | Path) -> Path:
        """Write ``values.safetensors``, ``result.json``, ``cells.csv`` and ``figure.html`` (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_safetensors(directory / "values.safetensors", {"values": self.values.detach().cpu()}, {"format": FORMAT, "axes": ",".join(self.axes)})
        atomic_write_text(directory / "cells.csv", self.cells_csv())
        atomic_write_text(directory / "figure.html", self.figure().to_html(include_plotlyjs=True, full_html=True))
        atomic_write_json(directory / "result.json", self.to_dict())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "PatchingResult":
        """Read a result written by ``save``."""
        directory = Path(directory)
        meta_path, values_path = directory / "result.json", directory / "values.safetensors"
        if not meta_path.exists() or not values_path.exists():
            raise InterpError(f"{directory} holds no saved patching result (result.json and values.safetensors are missing); pass the directory given to result.save().")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise InterpError(f"{meta_path} is not a patching result (format {meta.get('format')!r}, expected {FORMAT!r}).")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise InterpError(f"{meta_path} was written by a newer interp (format version {meta['format_version']}); upgrade interp to read it.")
        values = load_file(str(values_path))["values"]
        if list(values.shape) != meta["shape"]:
            raise InterpError(f"{values_path} holds values of shape {list(values.shape)} but result.json says {meta['shape']}; the directory is inconsistent.")
        return cls(
            values=values,
            axes=tuple(meta["axes"]),
            labels={axis: tuple(labels) for axis, labels in meta["labels"].items()},
            site=meta["site"],
            hook_names=tuple(meta["hook_names"]),
            method=meta["method"],
            direction=meta["direction"],
            metric_name=meta["metric_name"],
            clean_metric=float(meta["clean_metric"]),
            corrupt_metric=float(meta["corrupt_metric"]),
            clean_tokens=tuple(meta["clean_tokens"]),
            corrupt_tokens=tuple(meta["corrupt_tokens"]),
            n_prompts=int(meta["n_prompts"]),
            provenance=Provenance.from_dict(meta["provenance"]),
            fast_path=meta.get("fast_path"),  # absent from results saved before it was recorded
            fallback_reason=str(meta.get("fallback_reason", "")),
        )


# ---- inputs --------------------------------------------------------------------------------------

Prompts = PromptSet | Sequence[str] | str | Int[Tensor, "prompt pos"]


def _as_tokens(model, prompts: Prompts, what: str) -> Int[Tensor, "prompt pos"]:
    if isinstance(prompts, Tensor):
        tokens = prompts.long()
        if tokens.ndim == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise InterpError(f"{what} tokens must have shape [prompt, pos], got {tuple(prompts.shape)}.")
        d_vocab = int(model.cfg.d_vocab)
        if tokens.min() < 0 or tokens.max() >= d_vocab:
            raise InterpError(f"{what} token ids must be in 0..{d_vocab - 1} (the model's vocabulary), got {int(tokens.min())}..{int(tokens.max())}; pass ids from model.to_tokens.")
        return tokens.cpu()
    if isinstance(prompts, str):
        prompts = [prompts]
    token_lists = tokenize_prompts(model, prompts)
    lengths = {len(ids) for ids in token_lists}
    if len(lengths) > 1:
        by_length: dict[int, list[int]] = {}
        for index, ids in enumerate(token_lists):
            by_length.setdefault(len(ids), []).append(index)
        groups = "; ".join(f"{length} tokens: prompts {indices[:6]}{'...' if len(indices) > 6 else ''}" for length, indices in sorted(by_length.items()))
        raise InterpError(
            f"the {what} prompts tokenize to different lengths ({groups}). Position-wise patching compares the same "
            "position across prompts, so all prompts must have the same token length: run each length group separately, "
            "or reword the prompts to a common template."
        )
    return torch.stack(token_lists)


def _pair_tokens(model, clean: Prompts, corrupt: Prompts) -> tuple[Int[Tensor, "prompt pos"], Int[Tensor, "prompt pos"]]:
    clean_tokens = _as_tokens(model, clean, "clean")
    corrupt_tokens = _as_tokens(model, corrupt, "corrupt")
    if clean_tokens.shape[0] != corrupt_tokens.shape[0]:
        raise InterpError(f"got {clean_tokens.shape[0]} clean prompts but {corrupt_tokens.shape[0]} corrupt prompts; give one corrupt prompt per clean prompt, in the same order.")
    if clean_tokens.shape[1] != corrupt_tokens.shape[1]:
        first_clean = _str_tokens(model, clean_tokens[0])
        first_corrupt = _str_tokens(model, corrupt_tokens[0])
        raise InterpError(
            f"clean prompts are {clean_tokens.shape[1]} tokens long but corrupt prompts are {corrupt_tokens.shape[1]} "
            f"(first pair: {first_clean} vs {first_corrupt}). Patching swaps activations position by position, so each "
            "corrupt prompt must tokenize to the same length as its clean prompt: substitute words that are the same "
            "number of tokens (e.g. single-token names)."
        )
    return clean_tokens, corrupt_tokens


def _str_tokens(model, tokens: Int[Tensor, "pos"]) -> tuple[str, ...]:
    try:
        return tuple(str(t) for t in model.to_str_tokens(tokens.cpu()))
    except Exception:  # noqa: BLE001 - labels only; fall back to ids
        return tuple(str(int(t)) for t in tokens)


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise InterpError(f"direction must be 'denoising' (patch clean activations into the corrupt run) or 'noising' (corrupt into clean), got {direction!r}.")


def _check_hooks(model, names: Sequence[str]) -> None:
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None:
        return
    missing = [name for name in names if name not in hook_dict]
    if missing:
        raise InterpError(f"this model has no hook {missing[0]!r} ({len(missing)} of {len(names)} hooks missing), so that site cannot be patched on it; choose another site.")


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def _write_name(kind: str, layer: int) -> str:
    """The hook written to patch ``kind`` in ``layer`` (itself, except resid_mid: see _WRITTEN_THROUGH)."""
    return site_name(_WRITTEN_THROUGH.get(kind, kind), layer)


def _extra_reads(kinds: Sequence[str], n_layers: int) -> list[str]:
    """What a written-through site needs read besides itself: resid_pre and attn_out of every layer."""
    if not any(kind in _WRITTEN_THROUGH for kind in kinds):
        return []
    return [*layer_sites("resid_pre", n_layers), *layer_sites("attn_out", n_layers)]


def _check_resid_mid(acts: Mapping[str, Tensor], n_layers: int) -> None:
    """Raise unless resid_mid = resid_pre + attn_out in every layer of a captured run (what writing through attn_out needs)."""
    for layer in range(n_layers):
        pre, attn_out, mid = (acts[site_name(kind, layer)] for kind in ("resid_pre", "attn_out", "resid_mid"))
        error = float((mid - pre - attn_out).abs().max())
        if not error <= _FAST_PATH_TOLERANCE * max(1.0, float(mid.abs().max())):
            raise InterpError(
                f"on this model blocks.{layer}.hook_resid_mid is not hook_resid_pre + hook_attn_out (off by {error:.3g}), so the "
                "residual stream between attention and MLP cannot be patched; patch resid_pre, attn_out or resid_post instead."
            )


def _capture(model, tokens: Int[Tensor, "prompt pos"], names: Sequence[str], with_kv: bool = False) -> tuple[Tensor, dict[str, Tensor], Any]:
    """Logits, activations at ``names`` and (optionally) the KV cache of one unpatched run."""
    acts: dict[str, Tensor] = {}

    def make_hook(name: str) -> Callable:
        def hook(act: Tensor, hook: Any) -> None:
            acts[name] = act.detach()

        return hook

    hooks = [(name, make_hook(name)) for name in dict.fromkeys(names)]
    tokens = tokens.to(_model_device(model))
    if with_kv:
        logits, cache = model.run_with_hooks(tokens, return_type="logits_and_cache", fwd_hooks=hooks)
    else:
        logits, cache = model.run_with_hooks(tokens, fwd_hooks=hooks), None
    return logits.detach(), acts, cache


# ---- the batched engine --------------------------------------------------------------------------


@contextlib.contextmanager
def _skipping_blocks(model, n_skipped: int) -> Iterator[None]:
    """Blocks ``0..n_skipped-1`` pass their input through unchanged (``start_at_layer`` discards it anyway)."""
    blocks = list(model.blocks)[:n_skipped]

    def identity(*args: Any, **kwargs: Any) -> Tensor:
        return args[0] if args else kwargs["hidden_states"]

    for block in blocks:
        block.__dict__["forward"] = identity
    try:
        yield
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


# Cells of these kinds at one position change the residual after their block at that position
# only, so their block can run for that one position and the rest of the model from the next
# block ("late start"). Keys and values (k, v) are read by later positions, so they cannot.
_LATE_START_KINDS = frozenset({"resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "pattern"})
_WARNED_FALLBACKS: set[str] = set()  # fast-path fallback reasons already warned about in this process


def _warn_fallback(reason: str) -> None:
    """Warn (once per reason) that the fast path was expected but is not used."""
    if reason not in _WARNED_FALLBACKS:
        _WARNED_FALLBACKS.add(reason)
        warnings.warn(f"patching: skipping layers and positions does not work on this model ({reason}); using full batched forwards instead (same results, slower). result.fallback_reason records this.", stacklevel=5)


def _kv_tensors(kv_cache: Any, n_layers: int) -> list[tuple[Tensor, Tensor]]:
    """Per layer, the keys and values ``[prompt, head, pos, d_head]`` of a captured transformers cache; raise if it was not written."""
    if kv_cache is None:
        raise RuntimeError("the unpatched run returned no KV cache")
    layers = getattr(kv_cache, "layers", None)
    if layers is None:
        raise RuntimeError(f"the unpatched run's KV cache is a {type(kv_cache).__name__} without per-layer .layers (a transformers Cache has them)")
    if len(layers) != n_layers:
        raise RuntimeError(f"the unpatched run's KV cache has {len(layers)} layers but the model {n_layers}")
    for layer, cached in enumerate(layers):
        if getattr(cached, "keys", None) is None or getattr(cached, "values", None) is None:
            raise RuntimeError(f"layer {layer} of the unpatched run's KV cache holds no keys/values: attention did not write the cache (see interp.compat)")
    return [(cached.keys, cached.values) for cached in layers]


class _Engine:
    """Re-runs the target run from (start layer, start position) for many patched copies at once.

    Rows are ``(prompt copy)``: copy ``c`` of every prompt carries cell ``c``'s patch. In fast
    mode blocks before the start layer are skipped (the target run's residual is fed in) and
    positions before the start position come from the target run's KV cache. With
    ``last_logits`` only the final position is unembedded (the metric reads nothing else).
    ``fallback`` says why fast mode was refused ("" when it runs or was not asked for).
    """

    def __init__(self, model, tokens: Int[Tensor, "prompt pos"], logits: Float[Tensor, "prompt pos d_vocab"], resid: list[Tensor], kv_cache: Any, fast: bool, last_logits: bool):
        self.model = model
        self.tokens = tokens.to(_model_device(model))
        self.logits = logits
        self.resid = resid
        self.n_prompts, self.n_pos = tokens.shape
        self.n_layers = int(model.cfg.n_layers)
        self.kv: list[tuple[Tensor, Tensor]] | None = None
        self.keep = {"logits_to_keep": 1} if last_logits and self._keeps_last_logits() else {}
        self.fast = False
        self.late = False
        self.fallback = ""
        # cost of one forward = layers run * overhead + FLOPs * seconds_per_flop (calibrated in _try_fast_path)
        self.overhead, self.seconds_per_flop = 1.0, 1e-12
        if fast:
            self._try_fast_path(kv_cache)

    # ---- forwards ---------------------------------------------------------------------------------
    def forward(self, start_layer: int, start_pos: int, copies: int, hooks: list) -> Float[Tensor, "row suffix d_vocab"]:
        """Logits of ``copies`` copies of the target run with ``hooks``: the positions from ``offset`` on (see ``suffix``)."""
        if not self.fast:
            tokens = einops.repeat(self.tokens, "prompt pos -> (prompt copy) pos", copy=copies)
            return self.model.run_with_hooks(tokens, fwd_hooks=hooks, **self.keep)
        resid = einops.repeat(self.resid[start_layer][:, start_pos:], "prompt pos d_model -> (prompt copy) pos d_model", copy=copies)
        return self._run(resid, start_layer, start_pos, copies, hooks, **self.keep)

    def block_output(self, layer: int, pos: int, copies: int, hooks: list) -> Float[Tensor, "row d_model"]:
        """The residual after block ``layer`` at position ``pos`` only, with ``hooks`` (fast mode)."""
        resid = einops.repeat(self.resid[layer][:, pos : pos + 1], "prompt pos d_model -> (prompt copy) pos d_model", copy=copies)
        return self._run(resid, layer, pos, copies, hooks, stop_at_layer=layer + 1)[:, 0]

    def forward_residual(self, layer: int, pos: int, copies: int, first: Float[Tensor, "row d_model"]) -> Float[Tensor, "row suffix d_vocab"]:
        """Logits from block ``layer`` on, with each row's residual at ``pos`` replaced by ``first`` (fast mode)."""
        resid = einops.repeat(self.resid[layer][:, pos:], "prompt pos d_model -> (prompt copy) pos d_model", copy=copies).clone()
        resid[:, 0] = first.to(resid.dtype)
        return self._run(resid, layer, pos, copies, [], **self.keep)

    def _run(self, resid: Tensor, layer: int, pos: int, copies: int, hooks: list, **kwargs: Any) -> Tensor:
        cache = self._prefix_cache(pos, copies) if pos > 0 else None
        with _skipping_blocks(self.model, layer):
            return self.model.run_with_hooks(resid, start_at_layer=layer, past_key_values=cache, fwd_hooks=hooks, **kwargs)

    def _prefix_cache(self, length: int, copies: int):
        from transformers import DynamicCache

        config = getattr(getattr(self.model, "original_model", None), "config", None)
        cache = DynamicCache(config=config) if config is not None else DynamicCache()
        for layer, (keys, values) in enumerate(self.kv):
            cache.update(
                einops.repeat(keys[:, :, :length], "prompt head pos d_head -> (prompt copy) head pos d_head", copy=copies),
                einops.repeat(values[:, :, :length], "prompt head pos d_head -> (prompt copy) head pos d_head", copy=copies),
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
        except Exception:  # noqa: BLE001 - not supported: unembed every position
            return False

    def _try_fast_path(self, kv_cache: Any) -> None:
        """Use the fast path only where it reproduces the target run (else say why in ``fallback``, and warn); time it for the cost model."""
        layer, pos = self.n_layers // 2, self.n_pos // 2
        try:
            if not hasattr(self.model, "blocks"):
                raise RuntimeError("the model has no .blocks to skip")
            self.kv = _kv_tensors(kv_cache, self.n_layers)
            self.fast = True
            self._expect_close(self.forward(layer, pos, 1, []), self.logits[:, self.logits_from(pos) :], "logits")
        except Exception as error:  # noqa: BLE001 - any failure means: use plain forwards
            self.fast, self.kv = False, None
            self.fallback = f"{type(error).__name__}: {error}"
            _warn_fallback(self.fallback)
            return
        self._calibrate()
        if self.n_layers > 1:
            try:
                late_layer = min(layer, self.n_layers - 2)
                residual = self.block_output(late_layer, pos, 1, [])
                self._expect_close(residual, self.resid[late_layer + 1][:, pos], "residual")
                self._expect_close(self.forward_residual(late_layer + 1, pos, 1, residual), self.logits[:, self.logits_from(pos) :], "logits")
                self.late = True
            except Exception:  # noqa: BLE001 - late start is an optimisation only
                self.late = False

    def _expect_close(self, got: Tensor, expected: Tensor, what: str) -> None:
        error = float((got - expected).abs().max()) if got.shape == expected.shape else math.inf
        if not error <= _FAST_PATH_TOLERANCE * max(1.0, float(expected.abs().max())):
            raise RuntimeError(f"{what} differ from the plain forward by {error:.3g} (shapes {tuple(got.shape)} vs {tuple(expected.shape)})")

    def flops(self, rows: int, start_layer: int, start_pos: int) -> float:
        """Multiply-adds x 2 of one forward from (start layer, start position): blocks plus unembedding."""
        cfg = self.model.cfg
        d_model, d_head, n_heads = int(cfg.d_model), int(cfg.d_head), int(cfg.n_heads)
        n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
        d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * d_model)
        per_token = d_model * d_head * (2 * n_heads + 2 * n_kv) + (3 if getattr(cfg, "gated_mlp", False) else 2) * d_model * d_mlp
        per_token += 2 * n_heads * d_head * self.n_pos  # attention scores and mixing over the context
        positions = self.n_pos - start_pos
        unembedded = 1 if self.keep else positions
        return 2.0 * rows * ((self.n_layers - start_layer) * positions * per_token + unembedded * d_model * int(cfg.d_vocab))

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
        return (self.n_layers - start_layer) * self.overhead + self.flops(rows, start_layer, start_pos) * self.seconds_per_flop


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
    if kind in _POSITION_KINDS:  # [prompt, pos, d_model]
        return differ.any(dim=2).any(dim=0)
    if kind in PATTERN_SITES:  # [prompt, head, query_pos, key_pos]
        return einops.rearrange(differ.any(dim=3).any(dim=0), "head pos -> pos head")
    return differ.any(dim=3).any(dim=0)  # [prompt, pos, head, d_head]


def _cells(kind: str, by_position: bool, differences: list[Tensor]) -> tuple[tuple[int, ...], list[_Cell]]:
    """The grid shape and the cells that can change anything (the rest equal the baseline)."""
    n_layers = len(differences)
    cells: list[_Cell] = []
    if kind in _POSITION_KINDS:
        n_pos = differences[0].shape[0]
        shape = (n_layers, n_pos) if by_position else (n_layers,)
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
                changed = differ[:, head].nonzero().flatten()
                if changed.numel():
                    cells.append(_Cell((layer, head), layer, None, head, int(changed[0])))
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
            if previous is not None and not late and not previous.late and len(previous.cells) + len(piece) <= max_cells:
                merged_layer, merged_start = min(layer, previous.layer), min(start, previous.start)
                together = engine.cost(n * (len(previous.cells) + len(piece)), merged_layer, merged_start)
                apart = engine.cost(n * len(previous.cells), previous.layer, previous.start) + engine.cost(n * len(piece), layer, start)
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


def _chunk_hooks(kind: str, cells: Sequence[_Cell], sources: list[Tensor], offset: int, length: int) -> list[tuple[str, Callable]]:
    """One splice hook per layer in the chunk for a forward over positions ``offset:offset+length``."""
    copies = len(cells)
    window = slice(offset, offset + length)
    by_layer: dict[int, list[tuple[int, _Cell]]] = {}
    for copy, cell in enumerate(cells):
        by_layer.setdefault(cell.layer, []).append((copy, cell))
    hooks = []
    for layer, members in by_layer.items():
        source = sources[layer]
        if kind in _POSITION_KINDS:  # [prompt, pos, d_model]
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
        hooks.append((_write_name(kind, layer), _splice_hook(source, mask.to(source.device), copies)))
    return hooks


def _run_chunk(kind: str, chunk: _Chunk, engine: _Engine, sources: list[Tensor]) -> Float[Tensor, "copy prompt suffix d_vocab"]:
    """The logits of every copy of one chunk, from position ``engine.logits_from(chunk.start)`` on."""
    copies = len(chunk.cells)
    if chunk.late:
        if kind == "resid_post":  # the patched residual entering the next block is the source itself
            first = einops.repeat(sources[chunk.layer][:, chunk.start], "prompt d_model -> (prompt copy) d_model", copy=copies)
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
    for filler in (torch.full_like(logits[:, :-1], math.nan), torch.randn(logits[:, :-1].shape, generator=generator, device=logits.device, dtype=logits.dtype)):
        try:
            probed = float(reduce_metric(metric, torch.cat([filler, logits[:, -1:]], dim=1)))
        except Exception:  # noqa: BLE001 - a metric that cannot take the probe reads more than the last position
            return False
        if probed != value:
            return False
    return True


def _default_max_rows(model, n_prompts: int, n_pos: int, logit_positions: int) -> int:
    """Rows per forward that fit a 1 GiB budget: logits, residual-sized activations and attention patterns."""
    cfg = model.cfg
    per_row = 4 * (2 * logit_positions * int(cfg.d_vocab) + n_pos * (16 * int(cfg.d_model) + 3 * int(cfg.n_heads) * n_pos))
    return int(min(4096, max(n_prompts, _MEMORY_BUDGET_BYTES // max(1, per_row))))


# ---- activation patching -------------------------------------------------------------------------


def activation_patching(
    model,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    site: str = "resid_pre",
    by_position: bool = True,
    direction: Direction = "denoising",
    batch_size: int | None = None,
    progress: bool = True,
    fast_path: bool = True,
) -> PatchingResult:
    """Patch every cell of ``site`` from the source run into the target run; one metric value per cell.

    Args:
        model: a TransformerBridge (``interp.load_model``).
        clean / corrupt: prompts (PromptSet, strings) or token ids ``[prompt, pos]``; pairs in the
            same order, all of one token length.
        metric: ``metric(logits [n_prompts, pos, d_vocab]) -> scalar or [n_prompts]`` (averaged),
            e.g. ``interp.metrics.logit_diff(answer, wrong)``.
        site: resid_pre, resid_mid, resid_post, attn_out, mlp_out (cells: layer[, pos]) or
            attn_head_out, attn_head_value, attn_head_pattern, attn_head_query, attn_head_key
            (cells: layer[, pos], head; pattern positions are query positions).
        by_position: one cell per position; otherwise each cell patches every position.
        direction: "denoising" (clean into corrupt) or "noising" (corrupt into clean).
        batch_size: the most rows (cells x prompts) per forward; default from a 1 GiB budget.
        fast_path: skip the layers and positions a cell cannot change where that reproduces a
            plain forward (checked on the model; if not, warns and falls back). False: full batched
            forwards only. ``result.fast_path`` / ``result.fallback_reason`` say which ran.

    >>> result = activation_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)  # doctest: +SKIP
    >>> result.top(3)                                                                                         # doctest: +SKIP
    """
    kind = resolve_site(site)
    _check_direction(direction)
    if batch_size is not None and batch_size < 1:
        raise InterpError(f"batch_size must be at least 1 (rows of cells x prompts per forward), got {batch_size}.")
    clean_tokens, corrupt_tokens = _pair_tokens(model, clean, corrupt)
    n_layers = int(model.cfg.n_layers)
    names = layer_sites(kind, n_layers)
    extra = _extra_reads([kind], n_layers)
    _check_hooks(model, [*names, *extra])
    n_prompts, n_pos = clean_tokens.shape
    source_tokens, target_tokens = (clean_tokens, corrupt_tokens) if direction == "denoising" else (corrupt_tokens, clean_tokens)
    resid_names = layer_sites("resid_pre", n_layers)
    not_tried = ""  # why the fast path is not even tried (no warning: nothing was expected of it)
    if not fast_path:
        not_tried = "fast_path=False was passed"
    elif not hasattr(model, "blocks"):
        not_tried = "the model has no .blocks (not a TransformerBridge), so no layers can be skipped"
    fast = not not_tried
    with torch.no_grad():
        source_logits, source_acts, _ = _capture(model, source_tokens, names)
        target_logits, target_acts, kv_cache = _capture(model, target_tokens, [*names, *resid_names, *extra], with_kv=fast)
        source_metric = float(reduce_metric(metric, source_logits))
        baseline = float(reduce_metric(metric, target_logits))
        sources = [source_acts[name] for name in names]
        if kind in _WRITTEN_THROUGH:  # the attn_out that makes the residual after attention the source's
            _check_resid_mid(target_acts, n_layers)
            sources = [source - target_acts[pre] for source, pre in zip(sources, resid_names)]
        differences = [_differences(kind, source_acts[name], target_acts[name]) for name in names]
        shape, cells = _cells(kind, by_position, differences)
        values = torch.full(shape, baseline, dtype=torch.float32)
        last_logits = _reads_last_position_only(metric, target_logits, baseline)
        engine = _Engine(model, target_tokens, target_logits, [target_acts[name] for name in resid_names], kv_cache, fast, last_logits)
        del target_acts, source_acts
        max_rows = int(batch_size) if batch_size is not None else _default_max_rows(model, n_prompts, n_pos, 1 if engine.keep else n_pos)
        chunks = _plan(kind, cells, engine, max(1, max_rows // n_prompts))
        # Each cell's metric reads the target run's logits where the patch cannot reach (before the
        # chunk's first position), and the patched logits from there on.
        patched = target_logits.clone()
        for chunk in tqdm(chunks, desc=f"patching {site_label(kind)} ({len(cells)} cells)", unit="batch", disable=not progress):
            logits = _run_chunk(kind, chunk, engine, sources)
            start = engine.logits_from(chunk.start)
            for copy, cell in enumerate(chunk.cells):
                patched[:, start:] = logits[copy]
                values[cell.index] = float(reduce_metric(metric, patched))
            patched[:, start:] = target_logits[:, start:]
    clean_metric, corrupt_metric = (source_metric, baseline) if direction == "denoising" else (baseline, source_metric)
    fallback = not_tried or engine.fallback
    return _result(model, kind, by_position, values, "activation", direction, metric, clean_metric, corrupt_metric, clean_tokens, corrupt_tokens, names, engine.fast, fallback)


def _result(model, kind: str, by_position: bool, values: Tensor, method: str, direction: str, metric: Metric, clean_metric: float, corrupt_metric: float, clean_tokens: Tensor, corrupt_tokens: Tensor, names: Sequence[str], fast_path: bool | None = None, fallback_reason: str = "") -> PatchingResult:
    axes = _axes(kind, by_position)
    clean_str, corrupt_str = _str_tokens(model, clean_tokens[0]), _str_tokens(model, corrupt_tokens[0])
    labels: dict[str, tuple[str, ...]] = {"layer": tuple(str(layer) for layer in range(values.shape[0]))}
    if "pos" in axes:
        labels["pos"] = tuple(f"{p}:{c}" if c == k else f"{p}:{c}→{k}" for p, (c, k) in enumerate(zip(clean_str, corrupt_str)))
    if "head" in axes:
        n_heads = values.shape[-1]
        grouped = kind in ("k", "v") and n_heads != int(model.cfg.n_heads)
        labels["head"] = tuple(f"{'KV' if grouped else 'H'}{h}" for h in range(n_heads))
    provenance = Provenance(
        model_id=str(getattr(model.cfg, "model_name", "unknown")),
        weights_hash=weights_hash(model),
        dataset_hash=hash_json({"clean": clean_tokens.tolist(), "corrupt": corrupt_tokens.tolist()}),
        hooks=tuple(names),
        extra={"method": method, "direction": direction, "metric": metric_name(metric), "by_position": by_position, "site_kind": kind},
    )
    return PatchingResult(
        values=values.float().cpu(),
        axes=axes,
        labels=labels,
        site=site_label(kind),
        hook_names=tuple(names),
        method=method,
        direction=direction,
        metric_name=metric_name(metric),
        clean_metric=float(clean_metric),
        corrupt_metric=float(corrupt_metric),
        clean_tokens=clean_str,
        corrupt_tokens=corrupt_str,
        n_prompts=int(clean_tokens.shape[0]),
        provenance=provenance,
        fast_path=fast_path,
        fallback_reason=fallback_reason,
    )


# ---- attribution patching ------------------------------------------------------------------------


def _attribution_delta(kind: str, by_position: bool, delta: Tensor) -> Tensor:
    """Sum ``(source - target) * grad`` over everything inside one cell (prompts included)."""
    if kind in _POSITION_KINDS:  # [prompt, pos, d_model]
        return einops.reduce(delta, "prompt pos d_model -> pos", "sum") if by_position else delta.sum()
    if kind in PATTERN_SITES:  # [prompt, head, query_pos, key_pos]
        return einops.reduce(delta, "prompt head pos key_pos -> pos head", "sum") if by_position else einops.reduce(delta, "prompt head pos key_pos -> head", "sum")
    return einops.reduce(delta, "prompt pos head d_head -> pos head", "sum") if by_position else einops.reduce(delta, "prompt pos head d_head -> head", "sum")


def attribution_patching_sites(
    model,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    sites: Sequence[str] = ALL_SITES,
    by_position: bool = True,
    direction: Direction = "denoising",
) -> dict[str, PatchingResult]:
    """Attribution patching of many sites at once: two forwards and one backward.

    Each cell's value is the first-order estimate ``baseline + sum((source - target) * grad)``
    of the patched metric, with the gradient of the (prompt-averaged) metric taken on the
    target run. Returns ``{site: PatchingResult}`` with the same axes as ``activation_patching``.

    >>> results = attribution_patching_sites(model, clean, corrupt, metric, sites=["resid_pre", "attn_head_out"])  # doctest: +SKIP
    >>> results["attn_head_out"].top(5)                                                                           # doctest: +SKIP
    """
    _check_direction(direction)
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise InterpError("give at least one site to attribute, e.g. sites=['resid_pre'].")
    kinds = list(dict.fromkeys(resolve_site(site) for site in sites))
    clean_tokens, corrupt_tokens = _pair_tokens(model, clean, corrupt)
    n_layers = int(model.cfg.n_layers)
    names_by_kind = {kind: layer_sites(kind, n_layers) for kind in kinds}
    reads = list(dict.fromkeys([*(name for names in names_by_kind.values() for name in names), *_extra_reads(kinds, n_layers)]))
    written = {name: _write_name(kind, layer) for kind, names in names_by_kind.items() for layer, name in enumerate(names)}
    writes = list(dict.fromkeys(written.values()))
    _check_hooks(model, reads + writes)
    source_tokens, target_tokens = (clean_tokens, corrupt_tokens) if direction == "denoising" else (corrupt_tokens, clean_tokens)
    with torch.no_grad():
        source_logits, source_acts, _ = _capture(model, source_tokens, reads)
        source_metric = float(reduce_metric(metric, source_logits))
    target_acts: dict[str, Tensor] = {}
    probes: dict[str, Tensor] = {}

    def read(name: str) -> Callable:
        def hook(act: Tensor, hook: Any) -> None:
            target_acts[name] = act.detach()

        return hook

    def probe(name: str) -> Callable:
        # The gradient is taken at a zero added to what the hook returns, i.e. to the tensor the
        # model goes on with: the tensor a hook receives is not always that one (TransformerBridge's
        # q/k/v/z hooks receive a reshaped copy that carries no gradient).
        def hook(act: Tensor, hook: Any) -> Tensor:
            probes[name] = torch.zeros_like(act, requires_grad=True)
            return act + probes[name]

        return hook

    hooks = [(name, read(name)) for name in reads] + [(name, probe(name)) for name in writes]
    with torch.enable_grad():
        target_logits = model.run_with_hooks(target_tokens.to(_model_device(model)), fwd_hooks=hooks)
        value = reduce_metric(metric, target_logits)
        if not value.requires_grad:
            raise InterpError(
                f"metric {metric_name(metric)} is not differentiable in the logits (its value carries no gradient), which attribution "
                "patching needs. Avoid argmax, comparisons and .item() in the metric; a logit difference or log-probability works."
            )
        grads = torch.autograd.grad(value, [probes[name] for name in writes], allow_unused=True)
    unused = [name for name, grad in zip(writes, grads) if grad is None]
    if unused:
        raise InterpError(f"writing {unused[0]} does not reach the logits on this model, so it has no gradient to attribute with; choose another site.")
    grad_of = dict(zip(writes, grads))
    if "resid_mid" in kinds:
        _check_resid_mid(target_acts, n_layers)
    baseline = float(value.detach())
    clean_metric, corrupt_metric = (source_metric, baseline) if direction == "denoising" else (baseline, source_metric)
    results: dict[str, PatchingResult] = {}
    with torch.no_grad():
        for kind in kinds:
            names = names_by_kind[kind]
            deltas = [_attribution_delta(kind, by_position, (source_acts[name] - target_acts[name]) * grad_of[written[name]]) for name in names]
            values = baseline + torch.stack(deltas).float()
            results[site_label(kind)] = _result(model, kind, by_position, values, "attribution", direction, metric, clean_metric, corrupt_metric, clean_tokens, corrupt_tokens, names)
    return results


def attribution_patching(
    model,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    site: str = "resid_pre",
    by_position: bool = True,
    direction: Direction = "denoising",
) -> PatchingResult:
    """Attribution patching of one site (see ``attribution_patching_sites`` for several at once).

    >>> approx = attribution_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)  # doctest: +SKIP
    """
    return next(iter(attribution_patching_sites(model, clean, corrupt, metric, [site], by_position, direction).values()))


# ---- command line --------------------------------------------------------------------------------

_CLI_EXAMPLE = (
    "interp patch --model organism --clean clean.jsonl --corrupt corrupt.jsonl "
    "--answer ' mary' --wrong ' john' --site resid_pre,attn_head_out --by-position --out patch_out"
)


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``interp patch``."""
    from interp.cli import add_model_arguments, add_prompt_arguments, add_subcommand

    parser = add_subcommand(
        subparsers,
        "patch",
        _run_cli,
        help="Activation / attribution patching: which layer, position and head carry a behaviour (figures + data per site).",
        example=_CLI_EXAMPLE,
    )
    add_model_arguments(parser)
    parser.add_argument("--clean", required=True, type=Path, help="clean prompts (.jsonl/.csv/.txt), one per line")
    parser.add_argument("--corrupt", required=True, type=Path, help="corrupt prompts, same order and token length as --clean")
    parser.add_argument("--metric", default="logit_diff", choices=("logit_diff", "probability", "kl"), help="logit_diff needs --answer and --wrong; probability needs --answer; kl compares with the clean run's next-token distribution")
    parser.add_argument("--answer", default=None, help="the answer token (one token, same for every prompt), e.g. ' mary'")
    parser.add_argument("--wrong", default=None, help="the wrong-answer token for logit_diff, e.g. ' john'")
    parser.add_argument("--answer-field", default=None, help="read each prompt's answer token from this field of the --clean records instead of --answer")
    parser.add_argument("--wrong-field", default=None, help="read each prompt's wrong token from this field of the --clean records instead of --wrong")
    parser.add_argument("--site", default="resid_pre", help=f"comma-separated sites: {', '.join(PATCH_SITES)}, or 'all'")
    parser.add_argument("--by-position", action="store_true", help="one cell per position (default: each cell patches every position)")
    parser.add_argument("--direction", default="denoising", choices=DIRECTIONS, help="denoising: clean activations into the corrupt run; noising: corrupt into clean")
    parser.add_argument("--method", default="activation", choices=("activation", "attribution", "both"), help="activation patching (exact), attribution patching (gradient estimate) or both")
    parser.add_argument("--normalize", action="store_true", help="report (value - corrupt) / (clean - corrupt): 0 = corrupt run, 1 = clean run")
    parser.add_argument("--batch-size", type=int, default=None, help="most rows (cells x prompts) per forward (default: from a 1 GiB budget)")
    parser.add_argument("--top", type=int, default=5, help="print this many most important cells per result")
    parser.add_argument("--out", required=True, type=Path, help="output directory (one subdirectory per method and site)")
    add_prompt_arguments(parser)
    return parser


def _cli_metric(args: argparse.Namespace, model, clean: PromptSet, clean_tokens: Tensor) -> Metric:
    from interp import metrics

    def tokens(flag_value: str | None, field_name: str | None, flag: str) -> Any:
        if field_name:
            return [str(value) for value in clean.field(field_name)]
        if flag_value is None:
            raise InterpError(f"--metric {args.metric} needs {flag} TOKEN (or {flag}-field FIELD).")
        return flag_value

    if args.metric == "logit_diff":
        return metrics.logit_diff(tokens(args.answer, args.answer_field, "--answer"), tokens(args.wrong, args.wrong_field, "--wrong"), tokenizer=model.tokenizer)
    if args.metric == "probability":
        return metrics.probability(tokens(args.answer, args.answer_field, "--answer"), tokenizer=model.tokenizer)
    with torch.no_grad():
        reference = model(clean_tokens.to(_model_device(model)))
    return metrics.kl_divergence(reference)


def _run_cli(args: argparse.Namespace) -> int:
    from interp.cli import load_model_from_args, load_prompts_from_args
    from interp.metrics import normalized

    model = load_model_from_args(args)
    clean = load_prompts_from_args(args, model, path=args.clean)
    corrupt = load_prompts_from_args(args, model, path=args.corrupt)
    clean_tokens, corrupt_tokens = _pair_tokens(model, clean, corrupt)
    metric = _cli_metric(args, model, clean, clean_tokens)
    if args.normalize:
        with torch.no_grad():
            metric = normalized(metric, model(clean_tokens.to(_model_device(model))), model(corrupt_tokens.to(_model_device(model))))
    sites = list(PATCH_SITES) if args.site.strip() == "all" else [part.strip() for part in args.site.split(",") if part.strip()]
    for site in sites:
        resolve_site(site)
    methods = ("activation", "attribution") if args.method == "both" else (args.method,)
    results: list[PatchingResult] = []
    if "attribution" in methods:
        results.extend(attribution_patching_sites(model, clean_tokens, corrupt_tokens, metric, sites, args.by_position, args.direction).values())
    if "activation" in methods:
        for site in sites:
            results.append(activation_patching(model, clean_tokens, corrupt_tokens, metric, site, args.by_position, args.direction, args.batch_size))
    for result in results:
        directory = result.save(args.out / f"{result.method}_{result.site}")
        top = ", ".join(f"{cell.label} ({cell.effect:+.3g})" for cell in result.top(args.top))
        print(f"{result.method} {result.site}: clean {result.clean_metric:.4g}, corrupt {result.corrupt_metric:.4g}; top: {top} -> {directory}")
    return 0


__all__ = [
    "ALL_SITES",
    "Cell",
    "PATCH_SITES",
    "PatchingResult",
    "activation_patching",
    "attribution_patching",
    "attribution_patching_sites",
    "resolve_site",
]
