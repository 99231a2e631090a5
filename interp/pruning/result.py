"""``PruningResult``: metrics at every pruning setting, where the pruned weights sit, mask overlaps.

>>> result = PruningResult.load("runs/harm_pruning")   # doctest: +SKIP
>>> result.figure().show()                # harm and utility against sparsity      # doctest: +SKIP
>>> result.distribution_figure().show()   # pruned weights per layer and module    # doctest: +SKIP
>>> result.overlap_figure().show()        # masks of two harm categories vs chance # doctest: +SKIP
"""

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from interp.errors import InterpError
from interp.io import ResultFormat
from interp.provenance import Provenance
from interp.pruning.masks import MaskOverlap, PruningMask
from interp.pruning.scores import layer_module_grid
from interp.results import Result

KINDS = ("baseline", "set_difference", "top_k", "random")
HARM_METRICS = ("harm_judge_rate", "harm_keyword_rate")
UTILITY_METRICS = ("task_accuracy", "benign_judge_rate", "benign_loss", "benign_perplexity")
FORMAT = ResultFormat(
    kind="pruning",
    version=1,
    name="pruning result",
    meta_file="result.json",
    create="`interp prune ... --out DIR`, `interp run circuits/harm_pruning/harm_pruning.toml --out DIR` "
    "or PruningResult.save(DIR)",
    load="PruningResult.load(DIR)",
    aliases={"interp-pruning-result": 1},
)


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
            raise InterpError(
                f"point {self.label!r}: fraction {self.fraction} must be in [0, 1] and n_pruned {self.n_pruned} >= 0."
            )

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

    def saved_layout(self) -> dict[str, Any]:
        """Saved flat: the overlap's counts beside the dataset names."""
        return self.to_dict()

    @classmethod
    def fields_from_saved_layout(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        fields = {key: data[key] for key in ("a", "b", "mask") if key in data}
        return fields | {
            "overlap": {key: data[key] for key in ("n_a", "n_b", "n_both", "n_total", "chance_n_both") if key in data}
        }


@dataclass(frozen=True)
class PruningResult(Result):
    """A pruning experiment: one ``PruningPoint`` per setting, pruned-weight counts per matrix, overlaps.

    ``weight_sizes`` maps every decoder weight key to its number of weights; ``pruned_counts[label]``
    maps the keys of that point's mask to how many of their weights were pruned.
    """

    FORMAT = FORMAT

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
                    raise InterpError(
                        f"pruned_counts[{label!r}][{key!r}] = {count} is outside [0, {self.weight_sizes[key]}]."
                    )

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
            row = {
                key: getattr(point, key)
                for key in ("label", "kind", "p", "q", "seed", "category", "fraction", "n_pruned")
            }
            row.update({name: point.metrics.get(name) for name in self.metric_names})
            rows.append(row)
        return rows

    def change(self, label: str, metric: str) -> float:
        """``metric`` at point ``label`` minus its baseline value (in the metric's own units)."""
        baseline = self.baseline
        if baseline is None:
            raise InterpError("this result has no baseline point to compare with.")
        return self[label].metrics[metric] - baseline.metrics[metric]

    def summary(self) -> str:
        """A plain-text table of every point's main metrics (changes from the baseline in brackets) and the overlaps."""
        harm = self.pick_metric(HARM_METRICS)
        utility = [name for name in ("task_accuracy", "benign_judge_rate", "benign_loss") if name in self.metric_names]
        baseline = self.baseline
        header = f"{'setting':<44} {'% pruned':>9} {harm:>18}" + "".join(f" {name:>18}" for name in utility)
        lines = [header, "-" * len(header)]
        for point in self.points:
            cells = []
            for name in [harm, *utility]:
                value = point.metrics.get(name)
                if value is None:
                    cells.append(f"{'-':>18}")
                    continue
                percent = not name.endswith("loss")
                shown = f"{100 * value:.1f}%" if percent else f"{value:.3f}"
                if baseline is not None and point is not baseline and name in baseline.metrics:
                    delta = value - baseline.metrics[name]
                    shown += f" ({100 * delta:+.1f})" if percent else f" ({delta:+.3f})"
                cells.append(f"{shown:>18}")
            lines.append(f"{point.label:<44} {100 * point.fraction:>8.3f}% " + " ".join(cells))
        for entry in self.overlaps:
            o = entry.overlap
            lines.append(
                f"overlap ({entry.mask.replace('_', ' ')}) {entry.a} & {entry.b}: {o.n_both} shared of {o.n_a} / "
                f"{o.n_b} (chance {o.chance_n_both:.1f}; {o.enrichment:.1f}x chance; "
                f"Jaccard {o.jaccard:.3f} vs {o.chance_jaccard:.4f})"
            )
        return "\n".join(lines)

    # ---- figures ----------------------------------------------------------------------------
    def figure(self, harm_metric: str | None = None, utility_metric: str | None = None):
        """Harm and utility against the share of decoder weights pruned, one line per kind of mask."""
        from interp.plots import harm_utility_figure

        harm_metric = harm_metric or self.pick_metric(HARM_METRICS)
        utility_metric = utility_metric or self.pick_metric(UTILITY_METRICS)
        scale = {
            name: (100.0 if name.endswith(("_rate", "accuracy")) else 1.0) for name in (harm_metric, utility_metric)
        }
        groups: dict[str, list[PruningPoint]] = {}
        p_values = {point.p for point in self.points if point.kind == "set_difference"}
        for point in self.points:
            if point.kind == "baseline" or point.category not in (None, "all"):
                continue
            name = point.kind.replace("_", " ")
            if point.kind == "set_difference" and len(p_values) > 1:
                name = f"set difference p={point.p:g}"
            groups.setdefault(name, []).append(point)
        series: dict[str, dict[str, list]] = {}
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
            raise InterpError(
                f"no pruned-weight counts for {label!r}; available: {', '.join(self.pruned_counts) or 'none'}."
            )
        layers, modules, grid = layer_module_grid(
            {key: 100.0 * counts.get(key, 0) / size for key, size in self.weight_sizes.items()}
        )
        return layer_module_heatmap(
            grid, layers, modules, title=f"Pruned weights per matrix: {label}", colorbar_title="% pruned"
        )

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
        candidates = [
            p
            for p in self.points
            if p.kind == "set_difference" and p.label in self.pruned_counts and p.category in (None, "all")
        ]
        candidates = candidates or [p for p in self.points if p.label in self.pruned_counts]
        if not candidates:
            raise InterpError("this result has no pruned-weight counts.")
        return max(candidates, key=lambda point: point.fraction).label

    # ---- disk (the result contract: interp.results.Result) ---------------------------------------
    def files(self) -> dict[str, str]:
        files = {"points.csv": _csv(self.table())}
        if self.overlaps:
            files["overlaps.csv"] = _csv([entry.to_dict() for entry in self.overlaps])
        return files

    def figures(self) -> dict[str, Any]:
        figures = {"overlap.html": self.overlap_figure()} if self.overlaps else {}
        figures["harm_utility.html"] = self.figure()
        if self.pruned_counts:
            figures["distribution.html"] = self.distribution_figure()
        return figures


def point_from_mask(
    label: str, kind: str, mask: PruningMask | None, metrics: Mapping[str, float], **fields: Any
) -> PruningPoint:
    """A ``PruningPoint`` whose fraction and count come from ``mask`` (None: the unpruned baseline)."""
    if mask is None:
        return PruningPoint(label=label, kind=kind, fraction=0.0, n_pruned=0, metrics=dict(metrics), **fields)
    return PruningPoint(
        label=label, kind=kind, fraction=mask.fraction, n_pruned=mask.n_pruned, metrics=dict(metrics), **fields
    )


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if value is None else value) for key, value in row.items()})
    return buffer.getvalue()
