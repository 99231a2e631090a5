"""The result of ``train_probes``: per-layer probes, their metrics, directions, figure and files.

On disk (``ProbeResult.save(dir)``)::

    probe.safetensors   the tensors: coef, intercept, mean, scale, diff_means, metrics, folds, ...
    probe.json          hooks, layers, label names, standardisation, C, seed, texts, provenance
    probe.html          the figure
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp import defaults, plots
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.probes.inputs import check_same_model, hook_layer, is_resid_post, labels_for, layer_label, read_hook
from interp.probes.metrics import HOLDOUT, METRICS, binary_metrics, t_quantile_975
from interp.provenance import Provenance
from interp.results import Result

FORMAT = ResultFormat(
    kind="probe",
    version=1,
    name="probe",
    meta_file="probe.json",
    tensors_file="probe.safetensors",
    create="`interp probe train --store STORE --out DIR` or ProbeResult.save(DIR)",
    load="interp.probes.load(DIR)",
    aliases={"interp.probe/1": 1},
)
EVAL_FORMAT = ResultFormat(
    kind="probe_eval",
    version=1,
    name="probe evaluation",
    meta_file="probe_eval.json",
    create="`interp probe eval --probe DIR --store STORE --out OUT` or ProbeEval.save(OUT)",
    load="ProbeEval.load(OUT)",
    untagged=1,
)  # before tags: the same fields
WEIGHTS_FILE, META_FILE, FIGURE_FILE = FORMAT.tensors_file, FORMAT.meta_file, "probe.html"
DIRECTION_KINDS = ("diff_means", "probe")


def _check_shape(owner: str, name: str, tensor: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise InterpError(f"{owner}.{name} has shape {tuple(tensor.shape)}, expected {shape}.")


@dataclass(frozen=True)
class Direction:
    """A direction in the residual stream at one hook, for ``steer`` / ``ablate``.

    ``vector`` is in raw activation units: ``steer(model, d, alpha=1)`` shifts activations by
    the full separation of the class means along it (negative class towards positive).
    """

    vector: Float[Tensor, " d_model"]
    hook: str
    kind: str  # "diff_means" or "probe"
    label_names: tuple[str, str] = ("0", "1")
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.vector.ndim != 1:
            raise InterpError(f"Direction.vector must be 1-D [d_model], got shape {tuple(self.vector.shape)}.")
        if self.kind not in DIRECTION_KINDS:
            raise InterpError(f"Direction.kind is {self.kind!r}; use one of {', '.join(DIRECTION_KINDS)}.")

    @property
    def unit(self) -> Float[Tensor, " d_model"]:
        return self.vector / self.vector.norm().clamp_min(1e-12)


@dataclass(frozen=True)
class ProbeResult(Result):
    """Per-layer probes with cross-validated and held-out metrics; see ``train_probes``.

    Axes: ``layer`` indexes ``hooks`` (depth order); ``fold`` the cross-validation folds;
    ``prompt`` the training prompts (``fold[i] == -1``: held out). The probe at ``hooks[l]``
    reads ``(h - mean[l]) / scale[l]`` and outputs the logit ``that @ coef[l] + intercept[l]``
    of ``label_names[1]``; it is fitted on every prompt that is not held out.

    A k-sparse probe (``train_probes(..., top_features=k)``) records in ``features[l]`` the k features its
    final probe at ``hooks[l]`` reads, in order of |class-mean difference| over the non-held-out prompts (the
    largest first); ``coef[l]`` is zero elsewhere. ``features`` is None for dense probes.
    """

    FORMAT = FORMAT
    FIGURE_FILE = FIGURE_FILE

    hooks: tuple[str, ...]
    label_names: tuple[str, str]
    texts: tuple[str, ...]
    y: Int[Tensor, " prompt"]
    fold: Int[Tensor, " prompt"]
    cv_accuracy: Float[Tensor, "layer fold"]
    cv_auroc: Float[Tensor, "layer fold"]
    cv_log_loss: Float[Tensor, "layer fold"]
    holdout_accuracy: Float[Tensor, " layer"]
    holdout_auroc: Float[Tensor, " layer"]
    holdout_log_loss: Float[Tensor, " layer"]
    diff_means_cv_auroc: Float[Tensor, "layer fold"]
    diff_means_holdout_auroc: Float[Tensor, " layer"]
    coef: Float[Tensor, "layer d_model"]
    intercept: Float[Tensor, " layer"]
    mean: Float[Tensor, "layer d_model"]
    scale: Float[Tensor, "layer d_model"]
    diff_means: Float[Tensor, "layer d_model"]
    projection: Float[Tensor, "layer prompt 2"]
    oof_logits: Float[Tensor, "layer prompt"]
    converged: Bool[Tensor, " layer"]
    C: float
    seed: int
    n_iter: int
    provenance: Provenance
    one_vs_rest: bool = False
    features: Int[Tensor, "layer k"] | None = None  # a k-sparse probe's features per layer (None: dense)

    def __post_init__(self) -> None:
        n_layer, n_prompt = len(self.hooks), len(self.texts)
        n_fold = self.cv_accuracy.shape[-1] if self.cv_accuracy.ndim == 2 else -1
        d = self.coef.shape[-1] if self.coef.ndim == 2 else -1
        if len(self.label_names) != 2:
            raise InterpError(f"ProbeResult.label_names must name two classes, got {self.label_names!r}.")
        expected: dict[str, tuple[int, ...]] = {name: (n_prompt,) for name in ("y", "fold")}
        expected |= {
            name: (n_layer, n_fold) for name in ("cv_accuracy", "cv_auroc", "cv_log_loss", "diff_means_cv_auroc")
        }
        expected |= {
            name: (n_layer,)
            for name in (
                "holdout_accuracy",
                "holdout_auroc",
                "holdout_log_loss",
                "diff_means_holdout_auroc",
                "intercept",
                "converged",
            )
        }
        expected |= {name: (n_layer, d) for name in ("coef", "mean", "scale", "diff_means")}
        expected |= {"projection": (n_layer, n_prompt, 2), "oof_logits": (n_layer, n_prompt)}
        for name, shape in expected.items():
            _check_shape("ProbeResult", name, getattr(self, name), shape)
        if self.features is not None:
            k = self.features.shape[-1] if self.features.ndim == 2 else -1
            _check_shape("ProbeResult", "features", self.features, (n_layer, max(k, 1)))
            if self.features.is_floating_point() or not bool(((self.features >= 0) & (self.features < d)).all()):
                raise InterpError(f"ProbeResult.features must hold feature indices in 0..{d - 1}.")

    # ---- summaries ---------------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        return len(self.hooks)

    @property
    def d_model(self) -> int:
        return int(self.coef.shape[-1])

    @property
    def cv(self) -> int:
        return int(self.cv_accuracy.shape[-1])

    @property
    def layers(self) -> tuple[int, ...]:
        """Block index per hook; -1 for the embeddings."""
        return tuple(hook_layer(hook) for hook in self.hooks)

    @property
    def layer_labels(self) -> tuple[str, ...]:
        """Axis labels: the layer number for resid_post hooks, 'embed' for the embeddings."""
        return tuple(layer_label(hook) for hook in self.hooks)

    @property
    def best_index(self) -> int:
        """Index into ``hooks`` with the highest mean CV AUROC (ties: higher accuracy, then the earlier hook)."""
        auc = self.cv_auroc.mean(-1).nan_to_num(-1.0)
        acc = self.cv_accuracy.mean(-1).nan_to_num(-1.0)
        return max(range(self.n_layers), key=lambda i: (float(auc[i]), float(acc[i]), -i))

    @property
    def best_layer(self) -> int:
        return self.layers[self.best_index]

    @property
    def best_hook(self) -> str:
        return self.hooks[self.best_index]

    def cv_values(self, metric: str) -> Float[Tensor, "layer fold"]:
        if metric not in METRICS:
            raise InterpError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}.")
        return getattr(self, f"cv_{metric}")

    def cv_interval(
        self, metric: str
    ) -> tuple[Float[Tensor, " layer"], Float[Tensor, " layer"], Float[Tensor, " layer"]]:
        """(mean, low, high) over folds: mean +- t(0.975, cv-1) * sd / sqrt(cv), clipped to the metric's range.

        Folds share training data, so the interval is approximate (it ignores that correlation).
        """
        values = self.cv_values(metric)
        k = values.shape[-1]
        centre = values.mean(-1)
        half = t_quantile_975(k - 1) * values.std(-1, correction=1) / math.sqrt(k)
        upper = math.inf if metric == "log_loss" else 1.0
        return centre, (centre - half).clamp(0.0, upper), (centre + half).clamp(0.0, upper)

    def summary(self) -> str:
        """A plain-text table: CV mean [95% interval], held-out metrics and the diff-of-means AUROC per layer."""
        acc, acc_lo, acc_hi = self.cv_interval("accuracy")
        auc, auc_lo, auc_hi = self.cv_interval("auroc")
        log_loss = self.cv_log_loss.mean(-1)
        rows = [
            f"{'layer':>6}  {'cv accuracy':>21}  {'cv auroc':>21}  {'cv logloss':>10}  {'ho acc':>6}  "
            f"{'ho auroc':>8}  {'dm auroc':>8}"
        ]
        for i, label in enumerate(self.layer_labels):
            rows.append(
                f"{label:>6}  {acc[i]:.3f} [{acc_lo[i]:.3f}, {acc_hi[i]:.3f}]  {auc[i]:.3f} "
                f"[{auc_lo[i]:.3f}, {auc_hi[i]:.3f}]  {log_loss[i]:10.3f}  {self.holdout_accuracy[i]:6.3f}  "
                f"{self.holdout_auroc[i]:8.3f}  "
                f"{self.diff_means_holdout_auroc[i]:8.3f}{' *' if i == self.best_index else ''}"
            )
        rows.append(
            f"best layer: {self.layer_labels[self.best_index]} ({self.best_hook}); "
            f"positive class: {self.label_names[1]!r}"
        )
        if self.features is not None:
            best = self.features[self.best_index].tolist()
            rows.append(f"sparse probes on {len(best)} of {self.d_model} features; at the best layer: {best}")
        return "\n".join(rows)

    # ---- using the probes --------------------------------------------------------------------

    def index(self, layer: int | str | None = None) -> int:
        """Index into ``hooks`` of a layer number (its resid_post), a hook name, or None (the best layer)."""
        if layer is None:
            return self.best_index
        if isinstance(layer, str):
            if layer not in self.hooks:
                raise InterpError(f"hook {layer!r} has no probe; probed hooks: {', '.join(self.hooks)}.")
            return self.hooks.index(layer)
        matches = [i for i, number in enumerate(self.layers) if number == int(layer)]
        if not matches:
            raise InterpError(
                f"layer {layer} has no probe; probed layers: {', '.join(self.layer_labels)}. "
                "Pass a layer number, -1 for the embeddings, or a hook name from result.hooks."
            )
        return next((i for i in matches if is_resid_post(self.hooks[i])), matches[0])

    def direction(self, layer: int | str | None = None, kind: str = "diff_means") -> Direction:
        """The difference-of-means (default) or probe direction at ``layer`` (default: best), in raw units.

        Both are scaled to the class-mean separation along them, so ``alpha`` means the same for both.
        """
        i = self.index(layer)
        diff = self.diff_means[i]
        if kind == "diff_means":
            vector = diff
        elif kind == "probe":
            normal = self.coef[i] / self.scale[i]  # the probe's normal in raw activation space
            unit = normal / normal.norm().clamp_min(1e-12)
            vector = unit * (diff @ unit)
        else:
            raise InterpError(f"kind={kind!r}; use one of {', '.join(DIRECTION_KINDS)}.")
        return Direction(
            vector=vector.clone(),
            hook=self.hooks[i],
            kind=kind,
            label_names=self.label_names,
            provenance=self.provenance,
        )

    def logits(self, acts: Float[Tensor, "prompt d_model"], layer: int | str | None = None) -> Float[Tensor, " prompt"]:
        """The probe's logit of the positive class at one layer (float64), from activations at that layer."""
        return self._logits_at(acts, self.index(layer))

    def _logits_at(self, acts: Tensor, i: int) -> Tensor:
        if acts.ndim != 2 or acts.shape[-1] != self.d_model:
            raise InterpError(
                f"activations have shape {tuple(acts.shape)}; the probe at {self.hooks[i]} expects "
                f"[prompt, {self.d_model}] (h_last of the same model)."
            )
        x = acts.detach().to(torch.float64)
        return ((x - self.mean[i].double()) / self.scale[i].double()) @ self.coef[i].double() + float(self.intercept[i])

    def predict(self, data: Any, layer: int | str | None = None) -> Float[Tensor, " prompt"]:
        """P(positive class) per prompt at ``layer`` (default: the best layer).

        ``data``: an ActivationStore of the same model (its weights hash is checked), activations
        ``[prompt, d_model]`` at that layer, or ``[layer, prompt, d_model]`` with one entry per
        probed hook, in ``hooks`` order.
        """
        i = self.index(layer)
        if not isinstance(data, Tensor):
            check_same_model(self.provenance, data)
            data = read_hook(data, self.hooks[i])
        elif data.ndim == 3:
            if data.shape[0] != self.n_layers:
                raise InterpError(
                    f"activations have shape {tuple(data.shape)}: a [layer, prompt, d_model] tensor needs one entry "
                    f"per probed hook ({self.n_layers}); pass [prompt, d_model] for a single layer."
                )
            data = data[i]
        return torch.sigmoid(self._logits_at(data, i))

    def evaluate(self, store: Any, labels: Any = defaults.LABEL_FIELD) -> "ProbeEval":
        """Every layer's probe on another store of the same model (e.g. a test set).

        ``labels``: a record field of the store's prompts, or one label per prompt.
        """
        check_same_model(self.provenance, store)
        values = labels_for(labels, store.n_prompts, store.prompts.texts, "the store", store.prompts.records)
        if not self.one_vs_rest:
            unknown = sorted(set(values) - set(self.label_names))
            if unknown:
                raise InterpError(
                    f"labels {unknown} are not among the probe's classes {list(self.label_names)}; "
                    "evaluate on prompts labelled with the same label names."
                )
        y = torch.tensor([value == self.label_names[1] for value in values])
        logits = torch.stack([self._logits_at(read_hook(store, hook), i) for i, hook in enumerate(self.hooks)])
        metrics = binary_metrics(logits, y, torch.ones_like(logits, dtype=torch.bool))
        return ProbeEval(
            hooks=self.hooks,
            label_names=self.label_names,
            accuracy=metrics["accuracy"].float(),
            auroc=metrics["auroc"].float(),
            log_loss=metrics["log_loss"].float(),
            n_prompts=len(values),
            n_positive=int(y.sum()),
            provenance=store.provenance,
        )

    # ---- figure and files --------------------------------------------------------------------

    def figure(self, layer: int | str | None = None) -> go.Figure:
        """Metrics vs layer (fold means with 95% intervals, single folds, held-out) and a 2-D projection.

        The projection at ``layer`` (default: best) puts each prompt on the difference-of-means
        axis and on the top principal component orthogonal to it (standardised units), coloured
        by label; hover shows the prompt and its out-of-fold probability.
        """
        i = self.index(layer)
        model = f" — {self.provenance.model_id}" if self.provenance.weights_hash else ""
        intervals = [(metric, self.cv_interval(metric)) for metric in METRICS]
        figure = plots.probe_figure(
            layers=self.layer_labels,
            cv_interval={
                metric: (centre.numpy(), low.numpy(), high.numpy()) for metric, (centre, low, high) in intervals
            },
            cv_folds={metric: self.cv_values(metric).numpy() for metric in METRICS},
            holdout={metric: getattr(self, f"holdout_{metric}").numpy() for metric in METRICS},
            diff_means_auroc=self.diff_means_cv_auroc.mean(-1).numpy(),
            projection=self.projection[i].numpy(),
            label=self.y.numpy(),
            held_out=(self.fold == HOLDOUT).numpy(),
            probability=torch.sigmoid(self.oof_logits[i]).numpy(),
            texts=self.texts,
            label_names=self.label_names,
            hook=self.hooks[i],
            title=f"Linear probes on h_last: {self.label_names[1]!r} vs {self.label_names[0]!r}{model}",
        )
        # the legend in rows under the panels and the width the page gives: it fits a report column (~800 px)
        figure.update_layout(width=None, autosize=True, height=580, margin=dict(b=170),
                             legend=dict(orientation="h", x=0, xanchor="left", y=-0.3, yanchor="top"))  # fmt: skip
        return figure

    def meta_extra(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers), "best_index": self.best_index, "best_layer": self.best_layer,
            "best_hook": self.best_hook, "positive_label": self.label_names[1], "cv": self.cv,
            "standardisation": "per layer: (h - mean) / scale, population std over the non-held-out prompts "
                               "(tensors 'mean', 'scale'); logit = standardised @ coef + intercept",
            "objective": "sum_i logloss_i + ||coef||^2 / (2 C), intercept unpenalised "
                         "(scikit-learn LogisticRegression)",
        }  # fmt: skip


def load(directory: str | os.PathLike) -> ProbeResult:
    """Load a ``ProbeResult`` saved with ``.save(directory)`` (also by an earlier interp): ``ProbeResult.load``."""
    return ProbeResult.load(Path(directory))


@dataclass(frozen=True)
class ProbeEval(Result):
    """Saved probes applied to a new store: one value per probed hook."""

    FORMAT = EVAL_FORMAT
    FIGURE_FILE = "probe_eval.html"

    hooks: tuple[str, ...]
    label_names: tuple[str, str]
    accuracy: Float[Tensor, " layer"]
    auroc: Float[Tensor, " layer"]
    log_loss: Float[Tensor, " layer"]
    n_prompts: int
    n_positive: int
    provenance: Provenance

    def __post_init__(self) -> None:
        for name in METRICS:
            _check_shape("ProbeEval", name, getattr(self, name), (len(self.hooks),))

    def summary(self) -> str:
        rows = [f"{'layer':>6}  {'accuracy':>8}  {'auroc':>6}  {'log-loss':>8}"]
        for i, hook in enumerate(self.hooks):
            rows.append(
                f"{layer_label(hook):>6}  {self.accuracy[i]:8.3f}  {self.auroc[i]:6.3f}  {self.log_loss[i]:8.3f}"
            )
        rows.append(f"{self.n_prompts} prompts, {self.n_positive} labelled {self.label_names[1]!r}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hooks": list(self.hooks),
            "label_names": list(self.label_names),
            **{metric: getattr(self, metric).tolist() for metric in METRICS},
            "n_prompts": self.n_prompts,
            "n_positive": self.n_positive,
            "provenance": self.provenance.to_dict(),
        }

    def figure(self) -> go.Figure:
        """Accuracy, AUROC and log-loss per layer on the evaluated store."""
        labels = [layer_label(hook) for hook in self.hooks]
        hover = [
            f"{hook}<br>accuracy {float(self.accuracy[i]):.3f}<br>AUROC {float(self.auroc[i]):.3f}<br>log-loss "
            f"{float(self.log_loss[i]):.3f}"
            for i, hook in enumerate(self.hooks)
        ]
        series = {metric: getattr(self, metric).tolist() for metric in METRICS}
        title = f"Probes on {self.n_prompts} new prompts: {self.label_names[1]!r} vs {self.label_names[0]!r}"
        return plots.line_plot(
            labels, series, hover, title, "layer", "metric value", reference_lines={"chance AUROC": 0.5}
        )
