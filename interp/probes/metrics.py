"""Stratified splits and binary-classification metrics, batched over any leading axes.

>>> stratified_folds(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), cv=2, holdout=0.25).tolist()
[0, 1, -1, 0, 1, 0, 1, -1]
>>> auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([False, False, True, True])).item()
0.75
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.errors import InterpError

METRICS = ("accuracy", "auroc", "log_loss")
HOLDOUT = -1  # the `fold` of held-out prompts


def stratified_folds(
    y: Int[Tensor, " prompt"],
    cv: int = 5,
    holdout: float = 0.2,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> Int[Tensor, " prompt"]:
    """Assign each prompt a cross-validation fold ``0..cv-1`` or ``-1`` (held out), per class.

    Within each class the prompts are shuffled (numpy, ``seed``), the first ``round(holdout *
    n_class)`` (at least one when ``holdout > 0``) are held out and the rest dealt round-robin to
    the folds, continuing the count across classes so that folds differ in size by at most one.
    """
    if cv < 2:
        raise InterpError(f"cv={cv}: cross-validation needs at least 2 folds; pass cv=5 (or 3 for small sets).")
    if not 0.0 <= holdout < 1.0:
        raise InterpError(f"holdout={holdout}: pass a fraction in [0, 1), e.g. 0.2 (0 disables the held-out split).")
    y_np = y.detach().cpu().numpy()
    rng = np.random.default_rng(seed)
    fold = np.full(len(y_np), HOLDOUT, dtype=np.int64)
    offset = 0
    for cls in np.unique(y_np):
        idx = rng.permutation(np.flatnonzero(y_np == cls))
        n_hold = max(round(holdout * len(idx)), 1) if holdout > 0 else 0
        rest = idx[n_hold:]
        if len(rest) < cv:
            name = repr(class_names[int(cls)]) if class_names is not None else str(int(cls))
            raise InterpError(
                f"class {name} has {len(idx)} prompts, {len(rest)} after the held-out split; "
                f"{cv}-fold cross-validation needs at least {cv} per class. Add prompts, lower cv, or lower holdout."
            )
        fold[rest] = (offset + np.arange(len(rest))) % cv
        offset += len(rest)
    return torch.from_numpy(fold)


def auroc(
    scores: Float[Tensor, "*#batch prompt"],
    y: Bool[Tensor, "*#batch prompt"],
    mask: Bool[Tensor, "*#batch prompt"] | None = None,
) -> Float[Tensor, "..."]:
    """Area under the ROC curve along the last axis (Mann-Whitney U with average ranks for ties).

    Only prompts where ``mask`` is true count. NaN where a row has a single class.
    """
    scores = scores.double()
    keep = torch.ones_like(y) if mask is None else mask
    scores = torch.where(keep, scores, torch.full_like(scores, math.inf))  # masked-out rank above all kept
    scores, y, keep = torch.broadcast_tensors(scores, y, keep)
    scores = scores.contiguous()
    ordered = scores.sort(dim=-1).values
    below = torch.searchsorted(ordered, scores, right=False).double()
    at_or_below = torch.searchsorted(ordered, scores, right=True).double()
    rank = (below + at_or_below + 1.0) / 2.0  # 1-based average rank
    positive = y & keep
    n_pos = positive.sum(-1).double()
    n_neg = (keep & ~y).sum(-1).double()
    u = (rank * positive).sum(-1) - n_pos * (n_pos + 1.0) / 2.0
    return u / (n_pos * n_neg)


def binary_metrics(
    logits: Float[Tensor, "*batch prompt"], y: Bool[Tensor, " prompt"], mask: Bool[Tensor, "*batch prompt"]
) -> dict[str, Float[Tensor, " *batch"]]:
    """Accuracy (logit > 0), AUROC and mean log-loss (nats) over the prompts in ``mask``; NaN where empty."""
    logits = logits.double()
    weight = mask.double()
    n = weight.sum(-1)
    correct = ((logits > 0) == y).double()
    nll = torch.nn.functional.softplus(logits) - y.double() * logits
    nan = torch.full_like(n, math.nan)
    return {
        "accuracy": torch.where(n > 0, (correct * weight).sum(-1) / n, nan),
        "auroc": auroc(logits, y.expand_as(mask), mask),
        "log_loss": torch.where(n > 0, (nll * weight).sum(-1) / n, nan),
    }


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t quantile for ``df`` degrees of freedom."""
    table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
             2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
             2.052, 2.048, 2.045, 2.042]  # fmt: skip
    if df <= len(table):
        return table[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df)  # Cornish-Fisher, < 0.001 off for df > 30
