"""k-sparse probes: each probe reads only the k features with the largest class-mean difference.

As in sparse probing of neurons (Gurnee et al. 2023) and of SAE latents (Kantamneni et al. 2025, "Are Sparse
Autoencoders Useful? A Case Study in Sparse Probing"): for every problem (a cross-validation fold, and the final
fit on all non-held-out prompts) the features are ranked by

    score_j = | mean_{i in train, y_i = 1} x_ij  -  mean_{i in train, y_i = 0} x_ij |      (raw units)

over **that problem's training rows only** (never its test fold, never the held-out prompts), the k highest
are kept (ties: the lower index), and the logistic probe is fitted on those k columns alone, with the same
standardisation, objective and stopping rule as a dense probe. The result is a ``ProbeResult`` of the full
width whose coefficients are zero outside the final probe's k features (``result.features``), so ``predict``,
``evaluate`` and the figure read it as any probe.
"""

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.probes.metrics import HOLDOUT
from interp.probes.result import ProbeResult
from interp.probes.solver import problem_statistics


def check_top_features(top_features: int | None, width: int | None, hook: str) -> None:
    """Raise unless ``top_features`` is None (dense probes) or a number of features in 1..width (width None: >= 1)."""
    if top_features is None:
        return
    number = isinstance(top_features, int) and not isinstance(top_features, bool)
    if not number or top_features < 1 or (width is not None and top_features > width):
        upper = f"between 1 and {width} (the width of {hook})" if width is not None else "a whole number, at least 1"
        raise InterpError(
            f"top_features={top_features!r}: a sparse probe reads k features, k {upper}; or pass top_features=None "
            "for dense probes."
        )


def top_features(
    x: Float[Tensor, "layer prompt d"],
    spread: Float[Tensor, "layer d"],
    y: Bool[Tensor, " prompt"],
    train: Bool[Tensor, "problem prompt"],
    k: int,
) -> Int[Tensor, "layer problem k"]:
    """Per layer and problem, the ``k`` features with the largest |class-mean difference| over its training rows.

    ``x`` is standardised (``raw = centre + spread * x``); the difference is ranked in raw units
    (``spread * (mean_pos - mean_neg)``), ties broken towards the lower index. Only rows in ``train`` are read.
    """
    statistics = problem_statistics(x, y, train)
    score = ((statistics.positive_mean - statistics.negative_mean) * spread[:, None, :].double()).abs()
    return torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :k]


def train_sparse(
    x: Float[Tensor, "layer prompt d"],
    order: Int[Tensor, " prompt"],
    centre: Float[Tensor, "layer d"],
    spread: Float[Tensor, "layer d"],
    y: Bool[Tensor, " prompt"],
    fold: Int[Tensor, " prompt"],
    cv: int,
    k: int,
    fit: Any,
    **fields: Any,
) -> ProbeResult:
    """k-sparse probes on ``x`` (standardised, rows in ``order`` as ``train_probes`` passes them to ``fit``).

    Every (layer, problem) pair gets its own k columns, so the problems are fitted as ``layer * (cv + 1)``
    pseudo-layers of width k by ``fit`` (``train_probes``'s batched fit, called as ``fit(x, order, centre,
    spread, **fields)``); from pseudo-layer (l, p) only problem p is kept.
    """
    n_layer, _, d = x.shape
    n_problem = cv + 1
    y_rows, fold_rows = y[order], fold[order]
    n_fit = int((fold != HOLDOUT).sum())
    fit_fold = fold_rows[:n_fit]
    train = torch.stack([fit_fold != f for f in range(cv)] + [torch.ones_like(fit_fold, dtype=torch.bool)])
    chosen = top_features(x[:, :n_fit], spread, y_rows[:n_fit], train, k)  # [layer, problem, k]
    pseudo = chosen.reshape(n_layer * n_problem, k)
    owner_layer = torch.arange(n_layer).repeat_interleave(n_problem)
    x_sel = torch.stack([x[layer][:, columns] for layer, columns in zip(owner_layer.tolist(), pseudo)])
    centre_sel, spread_sel = centre[owner_layer].gather(1, pseudo), spread[owner_layer].gather(1, pseudo)
    every = fit(x_sel, order, centre_sel, spread_sel, **{**fields, "hooks": ("",) * len(pseudo)})

    def own(values: Tensor, problem: int | Tensor) -> Tensor:  # per layer: pseudo-layer (l, problem)'s row
        return values[torch.arange(n_layer) * n_problem + problem]

    diagonal = torch.arange(cv)
    per_fold = {  # [layer, fold]: fold f's metric from pseudo-layer (l, f)
        name: getattr(every, name).reshape(n_layer, n_problem, cv)[:, diagonal, diagonal]
        for name in ("cv_accuracy", "cv_auroc", "cv_log_loss", "diff_means_cv_auroc")
    }
    final = chosen[:, cv]  # [layer, k]: the final probe's features

    def widen(values: Tensor, background: Tensor) -> Tensor:  # [layer, k] on the final features -> [layer, d]
        return background.clone().scatter_(1, final, values.to(background.dtype))

    owner = torch.where(fold == HOLDOUT, torch.full_like(fold, cv), fold)  # the problem that scored each prompt
    oof = every.oof_logits.reshape(n_layer, n_problem, -1).gather(1, owner.expand(n_layer, 1, -1)).squeeze(1)
    return ProbeResult(
        y=every.y,
        fold=every.fold,
        **per_fold,
        holdout_accuracy=own(every.holdout_accuracy, cv),
        holdout_auroc=own(every.holdout_auroc, cv),
        holdout_log_loss=own(every.holdout_log_loss, cv),
        diff_means_holdout_auroc=own(every.diff_means_holdout_auroc, cv),
        coef=widen(own(every.coef, cv), torch.zeros(n_layer, d)),
        intercept=own(every.intercept, cv),
        mean=widen(own(every.mean, cv), centre.float()),
        scale=widen(own(every.scale, cv), spread.float()),
        diff_means=widen(own(every.diff_means, cv), torch.zeros(n_layer, d)),
        projection=own(every.projection, cv),
        oof_logits=oof,
        converged=every.converged.reshape(n_layer, n_problem).all(-1),
        C=every.C,
        n_iter=every.n_iter,
        features=final.clone(),
        **fields,
    )
