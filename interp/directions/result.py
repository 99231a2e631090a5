"""The result of ``find_directions`` and the direction it chose, with figure and files.

On disk (``DirectionResult.save(dir)``)::

    directions.safetensors   directions [pos, layer, d_model], ablation_score, addition_score, kl [pos, layer]
    directions.json          positions and their tokens, baselines, refusal tokens, the choice, provenance
    directions.html          the figure
    direction.safetensors    the chosen direction alone (``RefusalDirection.load``)
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from interp.errors import InterpError
from interp.io import ResultFormat, read_result, write_result
from interp.provenance import Provenance
from interp.results import Result

FORMAT = ResultFormat(
    kind="directions",
    version=1,
    name="refusal-direction result",
    meta_file="directions.json",
    tensors_file="directions.safetensors",
    create="find_directions(model, harmful, benign).save(DIR) or `interp direction find --model M "
    "--harmful F --benign F --out DIR`",
    load="DirectionResult.load(DIR)",
)
DIRECTION_FORMAT = ResultFormat(
    kind="refusal_direction",
    version=1,
    name="refusal direction",
    meta_file="",
    tensors_file="direction.safetensors",
    create="DirectionResult.direction.save(PATH) "
    "(`interp direction find ... --out DIR` writes DIR/direction.safetensors)",
    load="RefusalDirection.load(PATH)",
)
FIGURE_FILE = "directions.html"


@dataclass(frozen=True)
class RefusalDirection:
    """One difference-of-means direction: its vector (raw units), the layer and position it was read at, its model."""

    vector: Float[Tensor, " d_model"]
    layer: int
    position: int  # negative offset from the formatted prompt's end
    position_label: str = ""
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.vector.ndim != 1:
            raise InterpError(f"RefusalDirection.vector must be 1-D [d_model], got shape {tuple(self.vector.shape)}.")

    @property
    def unit(self) -> Float[Tensor, " d_model"]:
        return self.vector / self.vector.norm().clamp_min(1e-12)

    def describe(self) -> dict[str, Any]:
        source = self.provenance
        return {"layer": self.layer, "position": self.position, "position_label": self.position_label,
                "norm": float(self.vector.norm()), "model_id": source.model_id if source else "",
                "weights_hash": source.weights_hash if source else ""}  # fmt: skip

    def check_model(self, model: Any) -> None:
        """Raise unless ``model`` has the weights this direction was found on."""
        from interp.model import model_id
        from interp.model.weights import weights_hash

        source = self.provenance
        found = source.weights_hash if source else ""
        here = weights_hash(model) if found else ""
        if source is not None and found and here != found:
            raise InterpError(f"this direction was found on model {source.model_id!r} "
                              f"(weights hash {found[:12]}), not on this model {model_id(model)!r} "
                              f"(weights hash {here[:12]}); find a direction on this model "
                              "(interp direction find --model M ...).")  # fmt: skip

    def save(self, path: str | os.PathLike) -> Path:
        meta = {key: str(value) for key, value in self.describe().items()}
        return write_result(
            path,
            DIRECTION_FORMAT,
            meta,
            provenance=self.provenance,
            tensors={"vector": self.vector.detach().cpu().float()},
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RefusalDirection":
        saved = read_result(path, DIRECTION_FORMAT)
        assert saved.tensors is not None  # a single-file format always has its tensors
        vector = saved.tensors.require(["vector"], DIRECTION_FORMAT.name)["vector"]
        meta = saved.meta
        return cls(vector=vector, layer=int(meta["layer"]), position=int(meta["position"]),
                   position_label=meta.get("position_label", ""), provenance=saved.provenance)  # fmt: skip


@dataclass(frozen=True)
class DirectionResult(Result):
    """Candidates ``directions[pos, layer]`` with their scores (NaN: not scored) and the chosen one; see
    ``find_directions``."""

    FORMAT = FORMAT
    FIGURE_FILE = FIGURE_FILE

    directions: Float[Tensor, "pos layer d_model"]
    positions: tuple[int, ...]
    position_labels: tuple[str, ...]
    ablation_score: Float[Tensor, "pos layer"]
    addition_score: Float[Tensor, "pos layer"]
    kl: Float[Tensor, "pos layer"]
    baseline_harmful: float
    baseline_benign: float
    refusal_tokens: tuple[str, ...]
    chosen_position: int  # index into positions
    chosen_layer: int
    selection: str
    max_kl: float
    max_layer: int
    counts: Mapping[str, int] = field(default_factory=dict)
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.directions.ndim != 3:
            raise InterpError(
                f"DirectionResult.directions must be [pos, layer, d_model], got shape {tuple(self.directions.shape)}."
            )
        n_pos, n_layer, _ = self.directions.shape
        for name in ("ablation_score", "addition_score", "kl"):
            if tuple(getattr(self, name).shape) != (n_pos, n_layer):
                raise InterpError(
                    f"DirectionResult.{name} has shape {tuple(getattr(self, name).shape)}, expected {(n_pos, n_layer)}."
                )
        if len(self.positions) != n_pos or len(self.position_labels) != n_pos:
            raise InterpError(
                f"DirectionResult has {n_pos} positions of directions but {len(self.positions)} positions and "
                f"{len(self.position_labels)} labels."
            )
        if not (0 <= self.chosen_position < n_pos and 0 <= self.chosen_layer < n_layer):
            raise InterpError(
                f"the chosen candidate ({self.chosen_position}, {self.chosen_layer}) is outside [{n_pos}, {n_layer}]."
            )

    @property
    def n_layers(self) -> int:
        return int(self.directions.shape[1])

    @property
    def direction(self) -> RefusalDirection:
        """The chosen candidate."""
        p, layer = self.chosen_position, self.chosen_layer
        return RefusalDirection(
            self.directions[p, layer].clone(), layer, self.positions[p], self.position_labels[p], self.provenance
        )

    def candidate(self, position: int, layer: int) -> RefusalDirection:
        """The candidate at ``position`` (a negative offset, one of ``positions``) and ``layer``."""
        if position not in self.positions:
            raise InterpError(f"position {position} is not a candidate position; positions: {list(self.positions)}.")
        p = self.positions.index(position)
        return RefusalDirection(
            self.directions[p, layer].clone(), layer, position, self.position_labels[p], self.provenance
        )

    def scores(self) -> dict[str, float]:
        """The chosen candidate's scores next to the baselines."""
        p, layer = self.chosen_position, self.chosen_layer
        return {"ablation_score": float(self.ablation_score[p, layer]), "baseline_harmful": self.baseline_harmful,
                "addition_score": float(self.addition_score[p, layer]), "baseline_benign": self.baseline_benign,
                "kl": float(self.kl[p, layer])}  # fmt: skip

    def summary(self) -> str:
        s = self.scores()
        d = self.direction
        return (f"chosen: layer {d.layer}, position {d.position_label} ({self.selection})\n"
                f"refusal score (log-odds of {', '.join(self.refusal_tokens)}): "
                f"harmful {s['baseline_harmful']:.3f} -> {s['ablation_score']:.3f} ablated; "
                f"benign {s['baseline_benign']:.3f} -> {s['addition_score']:.3f} added; "
                f"KL on benign under ablation {s['kl']:.4f}")  # fmt: skip

    def figure(self) -> go.Figure:
        """Heatmaps by layer (x) and position (y) of the three scores; the chosen candidate is starred; hover gives all
        three."""
        layers = [f"L{layer}" for layer in range(self.n_layers)]
        ablation, addition, kl = (
            getattr(self, name).numpy().astype(float) for name in ("ablation_score", "addition_score", "kl")
        )
        hover = [[f"layer {layer}, position {label}"
                  f"<br>ablation score (harmful) {ablation[p, layer]:.3f} (baseline {self.baseline_harmful:.3f})"
                  f"<br>addition score (benign) {addition[p, layer]:.3f} (baseline {self.baseline_benign:.3f})"
                  f"<br>KL (benign, ablated) {kl[p, layer]:.4f}"
                  f"{'<br>over the layer filter' if layer >= self.max_layer else ''}"
                  f"{'<br>KL above the filter' if kl[p, layer] > self.max_kl else ''}"
                  for layer in range(self.n_layers)] for p, label in enumerate(self.position_labels)]  # fmt: skip
        panels = [("refusal score on harmful, direction ablated (low: ablation stops refusal)", ablation, "RdBu",
                   self.baseline_harmful),
                  ("refusal score on benign, direction added (high: addition induces refusal)", addition, "RdBu",
                   self.baseline_benign),
                  ("KL(original ‖ ablated) on benign", kl, "Viridis", None)]  # fmt: skip
        figure = make_subplots(rows=3, cols=1, subplot_titles=[title for title, *_ in panels], vertical_spacing=0.1)
        for row, (_title, values, scale, mid) in enumerate(panels, start=1):
            finite = values[np.isfinite(values)]
            if mid is not None:  # diverging around the baseline (zmid is only honoured without zmin/zmax)
                extra = dict(zmid=mid, reversescale=True)
            else:
                extra = dict(zmin=float(finite.min()), zmax=float(finite.max())) if finite.size else {}
            colorbar = dict(len=0.28, y=1 - (row - 0.5) / 3, title="log-odds" if mid is not None else "nats")
            figure.add_trace(go.Heatmap(z=values, x=layers, y=list(self.position_labels), text=hover, hoverinfo="text",
                                        colorscale=scale, colorbar=colorbar, **extra),
                             row=row, col=1)  # fmt: skip
            star = dict(symbol="star", size=16, color="gold", line=dict(color="black", width=1))
            figure.add_trace(go.Scatter(x=[layers[self.chosen_layer]], y=[self.position_labels[self.chosen_position]],
                                        mode="markers", marker=star, name="chosen", showlegend=row == 1,
                                        hoverinfo="skip"), row=row, col=1)  # fmt: skip
            figure.update_yaxes(type="category", autorange="reversed", title_text="position", row=row, col=1)
            figure.update_xaxes(type="category", title_text="layer (resid_pre)" if row == 3 else None, row=row, col=1)
        model = f" — {self.provenance.model_id}" if self.provenance else ""
        position = self.position_labels[self.chosen_position]
        chosen = f"chosen: layer {self.chosen_layer}, position {position} ({self.selection})"
        figure.update_layout(title=dict(text=f"Refusal-direction candidates{model}<br><sup>{chosen}</sup>"),
                             template="plotly_white", height=300 * 3 + 140, margin=dict(t=110),
                             width=max(900, 34 * self.n_layers + 320))  # fmt: skip
        return figure

    def meta_extra(self) -> dict:
        return {"chosen_scores": self.scores(),
                "refusal_score": "log(p / (1 - p)), p = probability of the refusal tokens at "
                                 "the first generated position"}  # fmt: skip

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directions.safetensors``, ``directions.json``, ``directions.html`` and the chosen
        ``direction.safetensors``."""
        directory = super().save(Path(directory))
        self.direction.save(Path(directory) / DIRECTION_FORMAT.tensors_file)
        return directory
