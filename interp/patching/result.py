"""The result of a patching run: values over labelled axes, its figure, and save / load."""

import csv
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import einops
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp import defaults
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.metrics import Metric, metric_name
from interp.model.weights import weights_hash
from interp.patching.inputs import position_labels, str_tokens
from interp.provenance import Provenance, hash_json
from interp.results import Result
from interp.sites import POSITION_SITES, patch_site_label

Direction = Literal["denoising", "noising"]
Method = Literal["activation", "attribution"]
DIRECTIONS: tuple[str, ...] = defaults.PATCH_DIRECTIONS
METHODS = ("activation", "attribution")
FORMAT = ResultFormat(
    kind="patching",
    version=1,
    name="patching result",
    meta_file="result.json",
    tensors_file="values.safetensors",
    create="activation_patching(...).save(DIR) or `interp patch ... --out DIR` (one subdirectory per method and site)",
    load="PatchingResult.load(DIR)",
    aliases={"interp.patching_result": 1},
)
RESULT_FILES = (FORMAT.meta_file, FORMAT.tensors_file, "cells.csv", "figure.html")
SHORTCUTS = ("last_position_logits", "metric_columns", "last_block_mlp", "late_start")  # see PatchingResult.shortcuts


def _axes(kind: str, by_position: bool) -> tuple[str, ...]:
    """The result's axes for a site kind: residual-width sites have no head axis."""
    if kind in POSITION_SITES:
        return ("layer", "pos") if by_position else ("layer",)
    return ("layer", "pos", "head") if by_position else ("layer", "head")


@dataclass(frozen=True)
class Cell:
    """One patched cell: its index into ``values``, a readable label, the value and its effect."""

    index: tuple[int, ...]
    label: str
    value: float
    effect: float


@dataclass(frozen=True, eq=False)
class PatchingResult(Result):
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
        shortcuts: further savings activation patching's forwards used (``SHORTCUTS``): only the last
            position unembedded, only the vocabulary columns the metric reads, the last block's MLP at
            the last position only, late start (a cell's block at its one position, then the rest).
    """

    FORMAT = FORMAT

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
    shortcuts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InterpError(f"method must be one of {METHODS}, got {self.method!r}.")
        if self.direction not in DIRECTIONS:
            raise InterpError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}.")
        if not self.axes or self.axes[0] != "layer" or not set(self.axes) <= {"layer", "pos", "head"}:
            raise InterpError(f"axes must start with 'layer' and use only layer/pos/head, got {self.axes}.")
        if self.values.ndim != len(self.axes):
            raise InterpError(
                f"values have {self.values.ndim} dimensions {tuple(self.values.shape)} but the axes are {self.axes}."
            )
        for axis, size in zip(self.axes, self.values.shape):
            labels = self.labels.get(axis)
            if labels is None or len(labels) != size:
                raise InterpError(
                    f"axis {axis!r} has {size} entries but {0 if labels is None else len(labels)} labels."
                )
        if len(self.clean_tokens) != len(self.corrupt_tokens):
            raise InterpError(
                f"clean_tokens ({len(self.clean_tokens)}) and corrupt_tokens "
                f"({len(self.corrupt_tokens)}) differ in length."
            )
        if (self.fast_path is False) != bool(self.fallback_reason):
            raise InterpError(
                "fallback_reason says why the fast path was not used, so it is given exactly when fast_path is False; "
                f"got fast_path={self.fast_path!r}, fallback_reason={self.fallback_reason!r}."
            )
        unknown = set(self.shortcuts) - set(SHORTCUTS)
        if unknown:
            raise InterpError(f"shortcuts {sorted(unknown)} are not known; they must be among {SHORTCUTS}.")

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
            raise InterpError(
                f"{self.metric_name} is {self.clean_metric:.6g} on the clean and {self.corrupt_metric:.6g} on the "
                "corrupt run; there is nothing to normalize by."
            )
        return replace(
            self,
            values=(self.values - self.corrupt_metric) / span,
            metric_name=f"normalized {self.metric_name}",
            clean_metric=1.0,
            corrupt_metric=0.0,
        )

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
            f"{self.method} patching, {self.direction}: {self.site} — {self.metric_name}<br><sup>clean "
            f"{self.clean_metric:.4g}, corrupt {self.corrupt_metric:.4g}, {self.n_prompts} prompt(s); "
            f"colour = change from the unpatched {'corrupt' if self.direction == 'denoising' else 'clean'} run</sup>"
        )
        layers = [f"L{i}" for i in range(values.shape[0])]
        if self.axes == ("layer",):
            point_hover = [
                f"layer {i}<br>{self.metric_name}: {v:.4g}<br>effect: {e:+.4g}"
                for i, (v, e) in enumerate(zip(values, effect))
            ]
            return line_plot(
                layers,
                {self.metric_name: values.tolist()},
                point_hover,
                title,
                "layer",
                self.metric_name,
                {"clean": self.clean_metric, "corrupt": self.corrupt_metric},
            )
        if self.axes == ("layer", "head"):
            heads = self.labels["head"]
            hover = [
                [
                    f"L{layer}{heads[h]}<br>{self.metric_name}: {values[layer, h]:.4g}"
                    f"<br>effect: {effect[layer, h]:+.4g}"
                    for h in range(len(heads))
                ]
                for layer in range(len(layers))
            ]
            return diverging_heatmap(
                values, heads, layers, hover, title, "head", "layer", self.metric_name, self.baseline
            )
        positions = self.labels["pos"]
        if self.axes == ("layer", "pos"):
            hover = [
                [
                    f"layer {layer}<br>{self._position_hover(p)}<br>{self.metric_name}: "
                    f"{values[layer, p]:.4g}<br>effect: {effect[layer, p]:+.4g}"
                    for p in range(len(positions))
                ]
                for layer in range(len(layers))
            ]
            return diverging_heatmap(
                values, positions, layers, hover, title, "position: token", "layer", self.metric_name, self.baseline
            )
        heads = self.labels["head"]
        rows = einops.rearrange(values, "layer pos head -> (layer head) pos")
        row_effect = rows - self.baseline
        row_labels = [f"L{layer}{heads[h]}" for layer in range(len(layers)) for h in range(len(heads))]
        hover = [
            [
                f"{row_labels[r]}<br>{self._position_hover(p)}<br>{self.metric_name}: "
                f"{rows[r, p]:.4g}<br>effect: {row_effect[r, p]:+.4g}"
                for p in range(len(positions))
            ]
            for r in range(len(row_labels))
        ]
        return diverging_heatmap(
            rows,
            positions,
            row_labels,
            hover,
            title,
            "position: token",
            "layer and head",
            self.metric_name,
            self.baseline,
        )

    def _position_hover(self, pos: int) -> str:
        clean, corrupt = self.clean_tokens[pos], self.corrupt_tokens[pos]
        same = " (same)" if clean == corrupt else ""
        return f"pos {pos}: clean {clean!r} / corrupt {corrupt!r}{same}"

    # ---- disk (the result contract: interp.results.Result) -----------------------------------------
    def meta_extra(self) -> dict[str, Any]:
        return {"shape": list(self.values.shape)}

    def tensor_metadata(self) -> dict[str, str]:
        return {"axes": ",".join(self.axes)}

    def files(self) -> dict[str, str]:
        return {"cells.csv": self.cells_csv()}

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


def build_result(
    model,
    kind: str,
    by_position: bool,
    values: Tensor,
    method: Method,
    direction: Direction,
    metric: Metric,
    clean_metric: float,
    corrupt_metric: float,
    clean_tokens: Tensor,
    corrupt_tokens: Tensor,
    names: Sequence[str],
    fast_path: bool | None = None,
    fallback_reason: str = "",
    shortcuts: tuple[str, ...] = (),
) -> PatchingResult:
    """The result of one run: ``values`` with their labels (from the first prompt pair's tokens) and provenance."""
    axes = _axes(kind, by_position)
    clean_str, corrupt_str = str_tokens(model, clean_tokens[0]), str_tokens(model, corrupt_tokens[0])
    labels: dict[str, tuple[str, ...]] = {"layer": tuple(str(layer) for layer in range(values.shape[0]))}
    if "pos" in axes:
        labels["pos"] = position_labels(model, clean_tokens[0], corrupt_tokens[0])
    if "head" in axes:
        n_heads = values.shape[-1]
        grouped = kind in ("k", "v") and n_heads != int(model.cfg.n_heads)
        labels["head"] = tuple(f"{'KV' if grouped else 'H'}{h}" for h in range(n_heads))
    provenance = Provenance(
        model_id=str(getattr(model.cfg, "model_name", "unknown")),
        weights_hash=weights_hash(model),
        dataset_hash=hash_json({"clean": clean_tokens.tolist(), "corrupt": corrupt_tokens.tolist()}),
        hooks=tuple(names),
        extra={
            "method": method,
            "direction": direction,
            "metric": metric_name(metric),
            "by_position": by_position,
            "site_kind": kind,
        },
    )
    return PatchingResult(
        values=values.float().cpu(),
        axes=axes,
        labels=labels,
        site=patch_site_label(kind),
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
        shortcuts=shortcuts,
    )
