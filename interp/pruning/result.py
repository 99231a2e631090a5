"""``PruningResult``: metrics at every pruning setting, where the pruned weights sit, mask overlaps.

>>> result = PruningResult.load("runs/harm_pruning")   # doctest: +SKIP
>>> result.figure().show()                # harm and utility against sparsity      # doctest: +SKIP
>>> result.distribution_figure().show()   # pruned weights per layer and module    # doctest: +SKIP
>>> result.overlap_figure().show()        # masks of two harm categories vs chance # doctest: +SKIP
"""

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from interp.errors import InterpError
from interp.io import atomic_write_json, atomic_write_text
from interp.provenance import Provenance
from interp.pruning.masks import MaskOverlap, PruningMask
from interp.pruning.scores import layer_module_grid

KINDS = ("baseline", "set_difference", "top_k", "random")
HARM_METRICS = ("harm_judge_rate", "harm_keyword_rate")
UTILITY_METRICS = ("task_accuracy", "benign_judge_rate", "benign_loss", "benign_perplexity")


@dataclass(frozen=True)
class PruningPoint:
    """The metrics of the model at one pruning setting (``kind="baseline"``: nothing pruned)."""

    label: str
    kind: str
    fraction: float
    n_pruned: int
    metrics: Mapping[str, float]
    p: float | None = None
    q: float | None = None
    seed: int | None = None
    category: str | None = None
    samples: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InterpError(f"point {self.label!r}: unknown kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        if not 0.0 <= self.fraction <= 1.0 or self.n_pruned < 0:
            raise InterpError(f"point {self.label!r}: fraction {self.fraction} must be in [0, 1] and n_pruned {self.n_pruned} >= 0.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = dict(self.metrics)
        data["samples"] = {key: [list(pair) for pair in value] for key, value in self.samples.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PruningPoint":
        return cls(**{**data, "metrics": dict(data["metrics"]), "samples": dict(data.get("samples", {}))})


@dataclass(frozen=True)
class OverlapEntry:
    """The overlap of the masks found for two datasets (e.g. two harm categories)."""

    a: str
    b: str
    overlap: MaskOverlap
    mask: str = "set_difference"  # how both masks were built: "set_difference" or "top_k"

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "mask": self.mask, **self.overlap.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OverlapEntry":
        overlap = MaskOverlap(n_a=data["n_a"], n_b=data["n_b"], n_both=data["n_both"], n_total=data["n_total"], chance_n_both=data["chance_n_both"])
        return cls(a=data["a"], b=data["b"], overlap=overlap, mask=data.get("mask", "set_difference"))


@dataclass(frozen=True)
class PruningResult:
    """A pruning experiment: one ``PruningPoint`` per setting, pruned-weight counts per matrix, overlaps.

    ``weight_sizes`` maps every decoder weight key to its number of weights; ``pruned_counts[label]``
    maps the keys of that point's mask to how many of their weights were pruned.
    """

    points: tuple[PruningPoint, ...]
    weight_sizes: Mapping[str, int]
    pruned_counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    overlaps: tuple[OverlapEntry, ...] = ()
    method: str = ""
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if not self.points:
            raise InterpError("a pruning result needs at least one point.")
        labels = [point.label for point in self.points]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise InterpError(f"point labels must be unique; repeated: {duplicates}.")
        for label, counts in self.pruned_counts.items():
            if label not in labels:
                raise InterpError(f"pruned_counts has an entry for {label!r}, which is not a point label.")
            for key, count in counts.items():
                if key not in self.weight_sizes:
                    raise InterpError(f"pruned_counts[{label!r}] names {key!r}, which is not in weight_sizes.")
                if not 0 <= count <= self.weight_sizes[key]:
                    raise InterpError(f"pruned_counts[{label!r}][{key!r}] = {count} is outside [0, {self.weight_sizes[key]}].")

    # ---- access -----------------------------------------------------------------------------
    def __getitem__(self, label: str) -> PruningPoint:
        for point in self.points:
            if point.label == label:
                return point
        raise InterpError(f"no point {label!r}; points: {', '.join(p.label for p in self.points)}.")

    @property
    def baseline(self) -> PruningPoint | None:
        return next((point for point in self.points if point.kind == "baseline"), None)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for point in self.points for name in point.metrics))

    def pick_metric(self, candidates: tuple[str, ...]) -> str:
        """The first of ``candidates`` that the points measured."""
        for name in candidates:
            if name in self.metric_names:
                return name
        return self.metric_names[0]

    def table(self) -> list[dict[str, Any]]:
        """One flat row per point (label, kind, p, q, seed, category, fraction, n_pruned, metrics...)."""
        rows = []
        for point in self.points:
            row = {key: getattr(point, key) for key in ("label", "kind", "p", "q", "seed", "category", "fraction", "n_pruned")}
            row.update({name: point.metrics.get(name) for name in self.metric_names})
            rows.append(row)
        return rows

    def change(self, label: str, metric: str) -> float:
        """``metric`` at point ``label`` minus its baseline value (in the metric's own units)."""
        baseline = self.baseline
        if baseline is None:
            raise InterpError("this result has no baseline point to compare with.")
        return self[label].metrics[metric] - baseline.metrics[metric]

    # ---- figures ----------------------------------------------------------------------------
    def figure(self, harm_metric: str | None = None, utility_metric: str | None = None):
        """Harm and utility against the share of decoder weights pruned, one line per kind of mask."""
        from interp.plots import harm_utility_figure

        harm_metric = harm_metric or self.pick_metric(HARM_METRICS)
        utility_metric = utility_metric or self.pick_metric(UTILITY_METRICS)
        scale = {name: (100.0 if name.endswith("_rate") or name.endswith("accuracy") else 1.0) for name in (harm_metric, utility_metric)}
        groups: dict[str, list[PruningPoint]] = {}
        p_values = {point.p for point in self.points if point.kind == "set_difference"}
        for point in self.points:
            if point.kind == "baseline" or point.category not in (None, "all"):
                continue
            name = point.kind.replace("_", " ")
            if point.kind == "set_difference" and len(p_values) > 1:
                name = f"set difference p={point.p:g}"
            groups.setdefault(name, []).append(point)
        series = {}
        for name, points in groups.items():
            chain = ([self.baseline] if self.baseline else []) + sorted(points, key=lambda item: item.fraction)
            series[name] = {
                "x": [100 * point.fraction for point in chain],
                "harm": [point.metrics.get(harm_metric, math.nan) * scale[harm_metric] for point in chain],
                "utility": [point.metrics.get(utility_metric, math.nan) * scale[utility_metric] for point in chain],
                "labels": [point.label for point in chain],
            }
        units = {name: " (%)" if scale[name] == 100.0 else "" for name in scale}
        return harm_utility_figure(
            series,
            harm_metric + units[harm_metric],
            utility_metric + units[utility_metric],
            title=f"Harm vs utility across sparsity{f' ({self.method})' if self.method else ''}",
        )

    def distribution_figure(self, label: str | None = None):
        """Share of each weight matrix pruned at point ``label`` (default: the largest set-difference mask)."""
        from interp.plots import layer_module_heatmap

        label = label or self._default_mask_label()
        counts = self.pruned_counts.get(label)
        if counts is None:
            raise InterpError(f"no pruned-weight counts for {label!r}; available: {', '.join(self.pruned_counts) or 'none'}.")
        layers, modules, grid = layer_module_grid({key: 100.0 * counts.get(key, 0) / size for key, size in self.weight_sizes.items()})
        return layer_module_heatmap(grid, layers, modules, title=f"Pruned weights per matrix: {label}", colorbar_title="% pruned")

    def overlap_figure(self):
        """Observed intersections of the masks of different datasets, next to their chance level."""
        from interp.plots import overlap_figure

        if not self.overlaps:
            raise InterpError("this result has no mask overlaps; configure at least two harm categories.")
        names = [f"{entry.a} & {entry.b} ({entry.mask.replace('_', ' ')})" for entry in self.overlaps]
        return overlap_figure(
            names,
            [entry.overlap.jaccard for entry in self.overlaps],
            [entry.overlap.chance_jaccard for entry in self.overlaps],
            title="Overlap of the masks of different categories vs chance (Jaccard index)",
            y_title="Jaccard index of the two masks",
        )

    def _default_mask_label(self) -> str:
        candidates = [p for p in self.points if p.kind == "set_difference" and p.label in self.pruned_counts and p.category in (None, "all")]
        candidates = candidates or [p for p in self.points if p.label in self.pruned_counts]
        if not candidates:
            raise InterpError("this result has no pruned-weight counts.")
        return max(candidates, key=lambda point: point.fraction).label

    # ---- disk ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "interp-pruning-result",
            "method": self.method,
            "provenance": self.provenance.to_dict() if self.provenance else None,
            "points": [point.to_dict() for point in self.points],
            "weight_sizes": dict(self.weight_sizes),
            "pruned_counts": {label: dict(counts) for label, counts in self.pruned_counts.items()},
            "overlaps": [entry.to_dict() for entry in self.overlaps],
        }

    def save(self, directory: str | Path) -> Path:
        """Write result.json, points.csv, overlaps.csv and the figures as HTML into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / "result.json", self.to_dict())
        atomic_write_text(directory / "points.csv", _csv(self.table()))
        if self.overlaps:
            atomic_write_text(directory / "overlaps.csv", _csv([entry.to_dict() for entry in self.overlaps]))
            atomic_write_text(directory / "overlap.html", self.overlap_figure().to_html(include_plotlyjs="cdn"))
        atomic_write_text(directory / "harm_utility.html", self.figure().to_html(include_plotlyjs="cdn"))
        if self.pruned_counts:
            atomic_write_text(directory / "distribution.html", self.distribution_figure().to_html(include_plotlyjs="cdn"))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "PruningResult":
        path = Path(directory) / "result.json"
        if not path.exists():
            raise InterpError(f"no result.json in {directory}; save a result there with PruningResult.save(dir).")
        data = json.loads(path.read_text())
        if data.get("format") != "interp-pruning-result":
            raise InterpError(f"{path} is not an interp pruning result.")
        return cls(
            points=tuple(PruningPoint.from_dict(point) for point in data["points"]),
            weight_sizes=data["weight_sizes"],
            pruned_counts=data.get("pruned_counts", {}),
            overlaps=tuple(OverlapEntry.from_dict(entry) for entry in data.get("overlaps", [])),
            method=data.get("method", ""),
            provenance=Provenance.from_dict(data["provenance"]) if data.get("provenance") else None,
        )


def point_from_mask(label: str, kind: str, mask: PruningMask | None, metrics: Mapping[str, float], **fields: Any) -> PruningPoint:
    """A ``PruningPoint`` whose fraction and count come from ``mask`` (None: the unpruned baseline)."""
    if mask is None:
        return PruningPoint(label=label, kind=kind, fraction=0.0, n_pruned=0, metrics=dict(metrics), **fields)
    return PruningPoint(label=label, kind=kind, fraction=mask.fraction, n_pruned=mask.n_pruned, metrics=dict(metrics), **fields)


def _csv(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if value is None else value) for key, value in row.items()})
    return buffer.getvalue()
