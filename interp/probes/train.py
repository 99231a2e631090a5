"""``train_probes``: a logistic-regression probe per layer, all layers and folds in one batched fit."""

from collections.abc import Sequence
from typing import Any

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp import defaults
from interp.errors import InterpError
from interp.probes.inputs import (
    TENSOR_SOURCE,
    check_store,
    encode_labels,
    from_tensor,
    labels_for,
    select_hooks,
    stack_store,
)
from interp.probes.metrics import HOLDOUT, auroc, binary_metrics, stratified_folds
from interp.probes.result import ProbeResult
from interp.probes.solver import (
    GRAM_ROWS,
    Covariance,
    fit_logistic,
    problem_statistics,
    projection_axes,
    row_sample,
    standardise,
)
from interp.probes.sparse import check_top_features, train_sparse
from interp.provenance import Provenance, hash_json


def train_probes(
    data: Any,
    labels: Any = defaults.LABEL_FIELD,
    layers: str | Sequence[int | str] = defaults.PROBE_LAYERS,
    cv: int = defaults.PROBE_CV,
    holdout: float = defaults.PROBE_HOLDOUT,
    C: float = defaults.PROBE_C,
    seed: int = defaults.PROBE_SEED,
    positive: str | None = None,
    tol: float = 1e-4,
    max_iter: int = defaults.PROBE_MAX_ITER,
    hooks: Sequence[str] | None = None,
    texts: Sequence[str] | None = None,
    progress: bool = True,
    top_features: int | None = None,
) -> ProbeResult:
    """Train an L2-regularised logistic-regression probe on h_last of every layer, all layers at once.

    Inputs are standardised per layer on each fold's training prompts, as scikit-learn's
    ``StandardScaler`` + ``LogisticRegression(C=C)`` would (same objective and stopping rule).
    Metrics come from stratified ``cv``-fold cross-validation on the prompts left after a
    stratified held-out split; the final probes are fitted on all non-held-out prompts.

    Args:
        data: an ActivationStore cached with ``positions="last"``, or activations
            ``[layer, prompt, d_model]`` (``hooks`` names its layers; default resid_post 0..L-1).
        labels: a record field of the store's prompts (``"label"``), a PromptSet with the same
            texts, or one label per prompt (list or tensor), in prompt order.
        layers: ``"all"`` (every cached resid_post, after the embeddings if cached), or layer
            numbers / hook names / site shorthands.
        cv, holdout, seed: folds, held-out fraction (0: none) and the seed of both splits.
        C: inverse L2 strength as in scikit-learn (objective ``sum logloss + ||w||^2 / (2C)``).
        positive: the positive class (default: the later of the two sorted labels); with more
            than two labels it makes the probe one-vs-rest.
        tol, max_iter: stop when max |gradient| of the mean-scaled objective is <= tol.
        hooks, texts: names of the tensor's layers and its prompts' texts (tensor input only).
        top_features: k for k-sparse probes (``interp.probes.sparse``): each probe reads only the k features
            with the largest |class-mean difference| over its own training prompts (never its test fold or the
            held-out prompts); ``result.features`` records the final probes' k. None: dense probes.

    >>> from interp.probes import synthetic_activations
    >>> acts, labels = synthetic_activations(n_layers=2, n_prompts=160, d_model=8, separation=[0, 3], seed=0)
    >>> train_probes(acts, labels, cv=4, progress=False).best_hook
    'blocks.1.hook_resid_post'
    """
    if C <= 0:
        raise InterpError(f"C={C}: the inverse regularisation strength must be positive, e.g. C=1.0.")
    with torch.no_grad():
        if isinstance(data, Tensor):
            if texts is None and hasattr(labels, "texts"):
                texts = labels.texts
            acts, hook_names, prompt_texts = from_tensor(data, layers, hooks, texts)
            values = labels_for(labels, len(prompt_texts), prompt_texts, "the activations")
            source = Provenance(
                model_id=TENSOR_SOURCE,
                weights_hash="",
                dataset_hash=hash_json({"texts": list(prompt_texts), "labels": values}),
                extra={"source": "tensor"},
            )
        else:
            check_store(data)
            if hooks is not None or texts is not None:
                raise InterpError("hooks= and texts= describe a tensor; a store names its own hooks and prompts.")
            hook_names = select_hooks(data, layers)
            prompt_texts = tuple(data.prompts.texts)
            values = labels_for(labels, len(prompt_texts), prompt_texts, "the store", data.prompts.records)
            source = data.provenance
        check_top_features(top_features, None, hook_names[0])
        y, label_names, one_vs_rest = encode_labels(values, positive)
        fold = stratified_folds(y.long(), cv=cv, holdout=holdout, seed=seed, class_names=label_names)
        # rows reordered: the prompts that some fit trains on first, the held-out ones after, so
        # that every pass of the solver reads one contiguous block and skips the held-out rows
        order = torch.cat([torch.nonzero(fold != HOLDOUT).flatten(), torch.nonzero(fold == HOLDOUT).flatten()])
        x, centre, spread = (
            standardise(acts, order) if isinstance(data, Tensor) else stack_store(data, hook_names, progress, order)
        )
        check_top_features(top_features, x.shape[-1], hook_names[0])
        settings = {"C": C, "cv": cv, "holdout": holdout, "positive": label_names[1], "tol": tol}
        if top_features is not None:
            settings["top_features"] = top_features
        provenance = Provenance(
            model_id=source.model_id,
            weights_hash=source.weights_hash,
            dataset_hash=source.dataset_hash,
            hooks=hook_names,
            seed=seed,
            extra={**dict(source.extra), "probe": settings},
        )
        fields = dict(hooks=hook_names, label_names=label_names, texts=prompt_texts, seed=seed, provenance=provenance,
                      one_vs_rest=one_vs_rest)  # fmt: skip
        if top_features is not None:

            def fit(x: Tensor, order: Tensor, centre: Tensor, spread: Tensor, **fields: Any) -> ProbeResult:
                return _train(x, order, centre, spread, y, fold, cv, C, tol, max_iter, progress, **fields)

            return train_sparse(x, order, centre, spread, y, fold, cv, top_features, fit, **fields)
        return _train(x, order, centre, spread, y, fold, cv, C, tol, max_iter, progress, **fields)


def _train(
    x: Float[Tensor, "layer prompt d_model"],
    order: Int[Tensor, " prompt"],
    centre: Float[Tensor, "layer d_model"],
    spread: Float[Tensor, "layer d_model"],
    y: Bool[Tensor, " prompt"],
    fold: Int[Tensor, " prompt"],
    cv: int,
    C: float,
    tol: float,
    max_iter: int,
    progress: bool,
    **fields: Any,
) -> ProbeResult:
    """Fit the ``cv`` fold problems and the final problem of every layer; score them; build the result.

    ``x`` is standardised per layer (``raw = centre + spread * x``), its rows in ``order`` (prompt
    ``order[i]`` in row i, the fitted prompts first); ``fields`` are the result's descriptive fields
    (hooks, label_names, texts, seed, provenance, one_vs_rest).
    """
    n_layer, _, _ = x.shape
    inverse = order.argsort()
    y_rows, fold_rows = y[order], fold[order]
    n_fit = int((fold != HOLDOUT).sum())
    fit_x, fit_fold = x[:, :n_fit], fold_rows[:n_fit]  # the rows some problem trains on (a view)
    # problems 0..cv-1: the CV folds (train on the other folds); problem cv: every non-held-out prompt
    train = torch.stack([fit_fold != f for f in range(cv)] + [torch.ones_like(fit_fold, dtype=torch.bool)])
    test = torch.stack([fold_rows == f for f in range(cv)] + [fold_rows == HOLDOUT])
    covariance = Covariance(fit_x if n_fit <= GRAM_ROWS else fit_x[:, row_sample(n_fit, GRAM_ROWS, 0)])
    statistics = problem_statistics(fit_x, y_rows[:n_fit], train)
    diff = (statistics.positive_mean - statistics.negative_mean).to(x.dtype)  # per problem, standardised coordinates
    axes = projection_axes(covariance, diff[:, cv])  # before the solver factorises the covariance
    fit = fit_logistic(
        fit_x, y_rows[:n_fit], train, statistics, covariance, C=C, tol=tol, max_iter=max_iter, progress=progress
    )

    # probe logits: the solver's on the fitted rows, one product on the held-out ones; diff-of-means
    # scores under every problem and the 2-D view of every prompt in one product
    normal, bias = statistics.in_input_coordinates(fit.coef, fit.intercept)
    held_out = torch.bmm(normal.to(x.dtype), x[:, n_fit:].transpose(1, 2)).double() + bias[..., None]
    logits = torch.cat([fit.logits, held_out], dim=-1)  # [layer, problem, row]
    scores = torch.bmm(torch.cat([diff, axes], dim=1), x.transpose(1, 2)).double()  # [layer, problems + 2, row]
    metrics, diff_auroc = problem_metrics(logits, scores[:, : cv + 1], y_rows, test)

    # out-of-fold logits: each CV prompt scored by the probe that did not see it, held-out ones by the final probe
    owner = torch.where(fold_rows == HOLDOUT, torch.full_like(fold_rows, cv), fold_rows)
    out_of_fold = logits.gather(1, einops.repeat(owner, "n -> l 1 n", l=n_layer)).squeeze(1)[:, inverse]
    return ProbeResult(
        y=y.long(),
        fold=fold,
        cv_accuracy=metrics["accuracy"][:, :cv].float(),
        cv_auroc=metrics["auroc"][:, :cv].float(),
        cv_log_loss=metrics["log_loss"][:, :cv].float(),
        holdout_accuracy=metrics["accuracy"][:, cv].float(),
        holdout_auroc=metrics["auroc"][:, cv].float(),
        holdout_log_loss=metrics["log_loss"][:, cv].float(),
        diff_means_cv_auroc=diff_auroc[:, :cv].float(),
        diff_means_holdout_auroc=diff_auroc[:, cv].float(),
        # the final probes (problem cv) in raw activation coordinates
        coef=fit.coef[:, cv].float(),
        intercept=fit.intercept[:, cv].float(),
        mean=(centre + spread * statistics.mean[:, cv]).float(),
        scale=(spread * statistics.scale[:, cv]).float(),
        diff_means=(spread * diff[:, cv]).float(),
        projection=einops.rearrange(scores[:, -2:, inverse], "l coord n -> l n coord").float(),
        oof_logits=out_of_fold.float(),
        converged=fit.converged.all(-1),
        C=float(C),
        n_iter=fit.n_iter,
        **fields,
    )


def problem_metrics(
    logits: Float[Tensor, "layer problem row"],
    diff_scores: Float[Tensor, "layer problem row"],
    y: Bool[Tensor, " row"],
    test: Bool[Tensor, "problem row"],
) -> tuple[dict[str, Float[Tensor, "layer problem"]], Float[Tensor, "layer problem"]]:
    """Each problem's metrics over its own test rows (a fold, or the held-out prompts).

    The rows are gathered per problem: ranking only a problem's test rows, not every row under a
    mask, is most of the scoring's time saved.
    """
    per_problem, diff_auroc = [], []
    for problem, rows in enumerate(test):
        index = torch.nonzero(rows).flatten()
        everything = torch.ones(len(index), dtype=torch.bool)
        per_problem.append(binary_metrics(logits[:, problem, index], y[index], everything))
        diff_auroc.append(auroc(diff_scores[:, problem, index], y[index]))
    metrics = {name: torch.stack([values[name] for values in per_problem], dim=1) for name in per_problem[0]}
    return metrics, torch.stack(diff_auroc, dim=1)
