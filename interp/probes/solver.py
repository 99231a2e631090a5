"""The batched solver: ``layer * fold`` L2-regularised logistic regressions fitted at once.

Objective of problem (l, f), as scikit-learn's ``LogisticRegression(C=C)`` on
``StandardScaler``-ed inputs: ``sum_i logloss_i + ||w||^2 / (2C)`` over the rows in fold f's
training set, intercept not penalised. Preconditioned L-BFGS on a ``[layer, fold, d_model]``
weight tensor: every iteration is two batched products over the activations (one for the
search direction's effect on the logits, one for the gradient) over the layers with a problem
still moving; line searches move along the logits without touching the activations again.
The held-out rows take no part: the caller passes only the rows some problem trains on.

The preconditioner is the Hessian at ``w = 0`` (the covariance / 4 + lambda, one Cholesky factor
per layer, shared by the layer's problems); for float32 inputs the covariance comes from an
int8 copy of the activations, which keeps its shape at a quarter of a float32 product's cost.
The first gradient comes from the class sums of the standardisation, and the solver's logits
are the fitted rows' scores.
"""

import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.progress import tqdm

FLOAT64_MAX_ELEMENTS = 2**24  # inputs up to this size are fitted in float64, larger ones in float32
GRAM_ROWS = 4096  # rows of the covariance estimate behind the preconditioner and the projection
INT8_STEP = 1 / 16  # grid of the float32 covariance estimate (in standard deviations)
STAT_ROWS = 1024  # rows of the per-layer centring / scaling (a reparametrisation: any estimate works)


@dataclass(frozen=True)
class ProblemStatistics:
    """Each problem's statistics over its training rows, in the coordinates of the input.

    ``mean`` and ``scale`` are the problem's standardisation (scikit-learn's ``StandardScaler``
    on those rows); the class means give the difference-of-means direction.
    """

    mean: Float[Tensor, "layer fold d_model"]
    scale: Float[Tensor, "layer fold d_model"]
    positive_mean: Float[Tensor, "layer fold d_model"]
    negative_mean: Float[Tensor, "layer fold d_model"]

    def in_input_coordinates(
        self, coef: Float[Tensor, "layer fold d_model"], intercept: Float[Tensor, "layer fold"]
    ) -> tuple[Float[Tensor, "layer fold d_model"], Float[Tensor, "layer fold"]]:
        """Weights and bias acting on the input of a linear map given on the standardised input."""
        weights = coef / self.scale
        return weights, intercept - (self.mean * weights).sum(-1)


@dataclass(frozen=True)
class Fit:
    """The fitted problems: coefficients on the problems' standardised inputs."""

    coef: Float[Tensor, "layer fold d_model"]
    intercept: Float[Tensor, "layer fold"]
    logits: Float[Tensor, "layer fold prompt"]  # of every problem on every row of x, at the fitted coefficients
    n_iter: int
    converged: Bool[Tensor, "layer fold"]


def problem_statistics(
    x: Float[Tensor, "layer prompt d_model"], y: Bool[Tensor, " prompt"], train: Bool[Tensor, "fold prompt"]
) -> ProblemStatistics:
    """Mean, (population) std and class means of every layer over every problem's training rows.

    From each problem's class sums and sums of squares: products in x's dtype, float64 bookkeeping.
    """
    n_layer, n, d = x.shape
    n_fold = train.shape[0]
    dtype = torch.float64
    n_f = train.sum(-1).to(dtype)[None, :, None]
    by_class = torch.cat([train & y, train & ~y]).to(x.dtype)  # [2 * fold, prompt]
    by_problem = train.to(x.dtype)
    class_sums = torch.empty(n_layer, 2 * n_fold, d, dtype=x.dtype)
    second = torch.empty(n_layer, n_fold, d, dtype=x.dtype)
    buffer = torch.empty(n, d, dtype=x.dtype)
    for layer in range(n_layer):  # one layer at a time, both products while it is in cache
        torch.mm(by_class, x[layer], out=class_sums[layer])
        torch.mul(x[layer], x[layer], out=buffer)
        torch.mm(by_problem, buffer, out=second[layer])
    positive_sum, negative_sum = class_sums.to(dtype).split(n_fold, dim=1)
    n_positive = (train & y).sum(-1).to(dtype)[None, :, None]
    mean = (positive_sum + negative_sum) / n_f
    scale = (second.to(dtype) / n_f - mean.square()).clamp_min(0.0).sqrt()
    scale = torch.where(scale < 1e-6, torch.ones_like(scale), scale)  # constant on train rows: leave unscaled
    return ProblemStatistics(mean, scale, positive_sum / n_positive, negative_sum / (n_f - n_positive))


def fit_logistic(
    x: Float[Tensor, "layer prompt d_model"],
    y: Bool[Tensor, " prompt"],
    train: Bool[Tensor, "fold prompt"],
    statistics: ProblemStatistics,
    covariance: "Covariance",
    C: float,
    tol: float,
    max_iter: int,
    history: int = 10,
    progress: bool = False,
) -> Fit:
    """Fit ``layer * fold`` logistic regressions at once by preconditioned L-BFGS.

    Problem (l, f) standardises ``x[l]`` with ``statistics`` (the mean and population std of the
    rows in ``train[f]``) and minimises ``mean_i logloss_i + ||w||^2 / (2 C n_f)`` over those
    rows, which has the minimiser of scikit-learn's ``C * sum_i logloss_i + ||w||^2 / 2``. ``x``
    should be centred and scaled per layer over all rows (a reparametrisation only; it keeps the
    products well conditioned); its dtype (float32 for large inputs, float64 for small) sets the
    precision. The Hessian at ``w = 0`` is close to ``covariance / 4 + lambda``; its inverse
    preconditions every problem of that layer (``covariance`` is factorised in place for it).
    Stopping rule as scikit-learn's lbfgs: max |gradient| <= tol on the mean-scaled objective (or
    no decrease left above the products' rounding).
    """
    n_layer, n, d = x.shape
    n_fold = train.shape[0]
    dtype = torch.float64
    n_f = train.sum(-1).to(dtype)  # [fold]
    lam = 1.0 / (C * n_f)  # [fold]

    mean, scale = statistics.mean, statistics.scale

    train_weight = train.to(dtype) / n_f[:, None]  # [fold, prompt]: a problem's mean over its training rows
    positive_weight = y.to(dtype) * train_weight

    inverse_hessian0 = covariance.inverse_hessian0(float(lam.mean()))

    def precondition(g: Tensor, layers: list[int], keep: Tensor | None = None) -> Tensor:
        """The Hessian at ``w = 0`` inverted, applied to ``g`` at the listed layers; the others keep ``keep``."""
        out = torch.zeros_like(g) if keep is None else keep.clone()
        out[layers, :, :d] = inverse_hessian0(g[layers, :, :d].to(x.dtype), layers).to(dtype)
        out[layers, :, d] = 4.0 * g[layers, :, d]
        return out

    def along(direction: Tensor, layers: list[int]) -> Tensor:
        """Change of every prompt's logit per unit step along ``direction`` (one pass over x's ``layers``)."""
        dv, db = statistics.in_input_coordinates(direction[..., :d], direction[..., d])
        return layer_products(dv.to(x.dtype), x.transpose(1, 2), layers).to(dtype) + db[..., None]  # [l, f, n]

    def data_loss(z: Tensor) -> Tensor:
        """Mean log-loss of every problem over its training rows, at logits ``z``."""
        # softplus at the products' precision (the logits are no more exact than that; float32's is 2.5x faster)
        log_partition = torch.nn.functional.softplus(z.to(x.dtype)).to(dtype)
        return torch.linalg.vecdot(log_partition, train_weight) - torch.linalg.vecdot(z, positive_weight)

    def gradient(z: Tensor, w: Tensor, layers: list[int], grad_x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Gradient at logits ``z`` and weights ``w``, and ``x``'s part of it.

        One pass over x's ``layers``; the other layers keep ``grad_x`` (their problems did not move).
        """
        resid = torch.sigmoid(z).mul_(train_weight).sub_(positive_weight)
        grad_x = layer_products(resid.to(x.dtype), x, layers, grad_x)
        return assemble(grad_x, resid.sum(-1), w), grad_x

    def assemble(grad_x: Tensor, resid_sum: Tensor, w: Tensor) -> Tensor:
        """The gradient in the problems' standardised coordinates (and the intercept's), from x's part."""
        grad_w = (grad_x.to(dtype) - mean * resid_sum[..., None]) / scale + lam[:, None] * w
        return torch.cat([grad_w, resid_sum[..., None]], dim=-1)

    def line_search(
        z: Tensor, zd: Tensor, w: Tensor, dw: Tensor, loss: Tensor, slope: Tensor, active: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Step along the line, the logits and the objective there, found without touching x.

        The logits move as ``z + t * zd``. Newton steps on the (convex) objective along the line
        from t = 1 until the step settles, then Armijo backtracking where the step did not decrease
        the objective enough; a problem with no decrease at all stays (t = 0: the rounding floor).
        """
        wdw, dwdw, ww = torch.linalg.vecdot(w, dw), torch.linalg.vecdot(dw, dw), torch.linalg.vecdot(w, w)
        zd_train = zd * train_weight  # the line's derivative terms, weighted once
        zd2_train = zd * zd_train
        positive_slope = torch.linalg.vecdot(zd, positive_weight)

        def objective(t: Tensor) -> tuple[Tensor, Tensor]:
            zt = torch.addcmul(z, t[..., None], zd)
            return data_loss(zt) + 0.5 * lam * (ww + 2 * t * wdw + t.square() * dwdw), zt

        t = torch.ones_like(loss)
        for _ in range(4):
            p = torch.sigmoid(torch.addcmul(z, t[..., None], zd))
            d1 = torch.linalg.vecdot(p, zd_train) - positive_slope + lam * (wdw + t * dwdw)
            d2 = torch.linalg.vecdot(torch.addcmul(p, p, p, value=-1), zd2_train) + lam * dwdw
            newton = torch.where(active & (d2 > 0), (t - d1 / d2.clamp_min(1e-300)).clamp(0.1 * t, 10.0 * t), t)
            settled = bool(((newton - t).abs() <= 1e-2 * t).all())  # a 1% longer or shorter step costs nothing
            t = newton
            if settled:
                break
        slack = 10 * torch.finfo(x.dtype).eps * loss.abs()  # changes below the products' rounding are noise
        new_loss, new_z = objective(t)
        ok = ~active | (new_loss <= loss + 1e-4 * t * slope + slack)
        t = torch.where(ok, t, torch.ones_like(t).clamp(max=t))
        for _ in range(30):
            if bool(ok.all()):
                break
            t = torch.where(ok, t, 0.5 * t)
            trial_loss, trial_z = objective(t)
            now = ~ok & (trial_loss <= loss + 1e-4 * t * slope + slack)
            new_loss = torch.where(now, trial_loss, new_loss)
            new_z = torch.where(now[..., None], trial_z, new_z)
            ok |= now
        t = torch.where(ok, t, torch.zeros_like(t))
        new_loss = torch.where(ok & active, new_loss, loss)
        new_z = torch.where((ok & active)[..., None], new_z, z)
        return t, new_z, new_loss

    theta = torch.zeros(n_layer, n_fold, d + 1, dtype=dtype)
    z = torch.zeros(n_layer, n_fold, n, dtype=dtype)
    every_layer = list(range(n_layer))
    loss = data_loss(z)
    # at w = 0 every residual is 1/2 - y: x's part of the gradient is half the difference of the class sums
    positive_share = (train & y).sum(-1).to(dtype) / n_f
    class_gap = (
        statistics.negative_mean * (1 - positive_share[:, None]) - statistics.positive_mean * positive_share[:, None]
    )
    grad_x = (0.5 * class_gap).to(x.dtype)
    grad = assemble(grad_x, (0.5 - positive_share).expand(n_layer, n_fold), theta[..., :d])
    s_hist = torch.zeros(history, n_layer, n_fold, d + 1, dtype=dtype)
    y_hist = torch.zeros_like(s_hist)
    py_hist = torch.zeros_like(s_hist)  # the preconditioner applied to y_hist
    pgrad = precondition(grad, every_layer)
    rho = torch.zeros(history, n_layer, n_fold, dtype=dtype)
    gamma = torch.ones(n_layer, n_fold, dtype=dtype)
    last_valid = torch.zeros(n_layer, n_fold, dtype=torch.bool)
    at_floor = torch.zeros(n_layer, n_fold, dtype=torch.bool)
    active = grad.abs().amax(-1) > tol
    n_iter = 0

    bar = tqdm(total=max_iter, desc="probes (all layers)", disable=not progress, leave=False)
    for n_iter in range(1, max_iter + 1):
        if not bool(active.any()):
            n_iter -= 1
            break
        # two-loop recursion, all problems at once; empty history slots have rho = 0. The
        # preconditioner is linear, so P q = P g - sum_j a_j P y_j from the stored P g and P y_j
        # (one preconditioner application per iteration, to the new gradient)
        q = grad.clone()
        pq = pgrad.clone()
        slots = [(n_iter - 2 - j) % history for j in range(min(n_iter - 1, history))]
        alphas = []
        for j in slots:  # in-place updates: this loop runs on every problem's full weight vector
            a = rho[j] * torch.linalg.vecdot(s_hist[j], q)
            q.addcmul_(a[..., None], y_hist[j], value=-1)
            pq.addcmul_(a[..., None], py_hist[j], value=-1)
            alphas.append(a)
        if slots:  # scaling gamma from the newest curvature pair
            newest = slots[0]
            ypy = torch.linalg.vecdot(y_hist[newest], py_hist[newest])
            gamma = torch.where(
                last_valid, torch.linalg.vecdot(s_hist[newest], y_hist[newest]) / ypy.clamp_min(1e-300), gamma
            )
        r = pq.mul_(gamma[..., None])
        for j, a in zip(reversed(slots), reversed(alphas)):
            b = rho[j] * torch.linalg.vecdot(y_hist[j], r)
            r.addcmul_((a - b)[..., None], s_hist[j])
        direction = r.mul_(-active[..., None].to(dtype))
        slope = torch.linalg.vecdot(grad, direction)
        uphill = active & (slope >= 0)
        if bool(uphill.any()):
            direction = torch.where(uphill[..., None], -pgrad, direction) * active[..., None]
            slope = (grad * direction).sum(-1)

        live = torch.nonzero(active.any(-1)).flatten().tolist()  # layers with a problem still moving
        zd = along(direction, live)
        step, z, new_loss = line_search(z, zd, theta[..., :d], direction[..., :d], loss, slope, active)
        stalled = active & (step == 0)
        at_floor |= stalled
        s = step[..., None] * direction
        theta = theta + s
        new_grad, grad_x = gradient(z, theta[..., :d], live, grad_x)
        new_pgrad = precondition(new_grad, live, pgrad)

        yv = new_grad - grad
        sy = (s * yv).sum(-1)
        valid = active & ~stalled & (sy > 1e-20)
        slot = (n_iter - 1) % history
        s_hist[slot] = torch.where(valid[..., None], s, 0.0)
        y_hist[slot] = torch.where(valid[..., None], yv, 0.0)
        py_hist[slot] = torch.where(valid[..., None], new_pgrad - pgrad, 0.0)
        rho[slot] = torch.where(valid, 1.0 / sy.clamp_min(1e-300), 0.0)
        last_valid = valid

        loss, grad, pgrad = new_loss, new_grad, new_pgrad
        active = active & ~stalled & (grad.abs().amax(-1) > tol)
        bar.update(1)
        bar.set_postfix(unconverged=int(active.sum()))
    bar.close()

    grad_max = grad.abs().amax(-1)
    converged = (grad_max <= tol) | (at_floor & (grad_max <= 10 * tol))  # rounding floor within a decade of tol
    if not bool(converged.all()):
        bad = sorted({int(i) for i in torch.nonzero(~converged)[:, 0]})
        warnings.warn(
            f"probes at layer indices {bad} stopped after {n_iter} iterations with max |gradient| "
            f"{float(grad_max.max()):.2g} > tol={tol}; raise max_iter or lower C.",
            stacklevel=3,
        )
    return Fit(
        coef=theta[..., :d],
        intercept=theta[..., d],
        logits=z,
        n_iter=n_iter,
        converged=converged,
    )


def layer_products(
    left: Float[Tensor, "layer a b"], right: Float[Tensor, "layer b c"], layers: list[int], keep: Tensor | None = None
) -> Float[Tensor, "layer a c"]:
    """``left[l] @ right[l]`` for the listed layers; the others keep ``keep[l]`` (zeros without it).

    The products read one layer of activations each; converged layers are skipped.
    """
    if len(layers) == left.shape[0]:
        return torch.bmm(left, right)
    out = torch.zeros(left.shape[0], left.shape[1], right.shape[2], dtype=left.dtype) if keep is None else keep.clone()
    for layer in layers:
        torch.mm(left[layer], right[layer], out=out[layer])
    return out


def compute_dtype(n_elements: int) -> torch.dtype:
    return torch.float64 if n_elements <= FLOAT64_MAX_ELEMENTS else torch.float32


def row_sample(n: int, size: int, seed: int) -> Tensor:
    """Sorted random row indices (all rows when ``n <= size``), deterministic by seed."""
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def projection_axes(
    covariance: "Covariance", direction: Float[Tensor, "layer d_model"]
) -> Float[Tensor, "layer 2 d_model"]:
    """The unit difference-of-means direction and the top PC orthogonal to it (the 2-D view's axes)."""
    unit = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    d = direction.shape[-1]
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(direction.shape[0], d, min(4, d), generator=gen).to(direction.dtype)

    def deflate(m: Tensor) -> Tensor:
        return m - unit[..., None] * (unit[:, None, :] @ m)

    basis = torch.linalg.qr(deflate(basis)).Q
    for _ in range(5):  # orthogonal iteration on the deflated covariance: the axis is for a figure, and the
        # block of 4 converges as (5th / 1st eigenvalue)^5 (6e-6 for a spectrum decaying as k^-1.5)
        basis = torch.linalg.qr(deflate(covariance.times(basis))).Q
    small = basis.transpose(1, 2) @ deflate(covariance.times(basis))
    _, evecs = torch.linalg.eigh((small + small.transpose(1, 2)) / 2)
    pc = deflate(basis @ evecs[..., -1:]).squeeze(-1)
    pc = pc / pc.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.stack([unit, pc], dim=1)


def gram(x: Float[Tensor, "layer row d_model"]) -> Float[Tensor, "layer d_model d_model"]:
    """``x^T x`` per layer: exact for float64 inputs, from an int8 copy for float32 ones.

    The float32 case is the covariance behind the preconditioner and the 2-D view's axes, which
    need its shape, not its digits: the standardised values are rounded to a grid of
    ``INT8_STEP`` (clipped at +-127 steps, ~8 standard deviations) and multiplied in int8 with
    exact int32 sums (4x a float32 product's speed); the rounding's variance (``step^2 / 12``
    per row) is taken off the diagonal. Rounding the products' *outputs* instead (bfloat16) spoils
    the small eigenvalues that the preconditioner exists for.
    """
    n_layer, rows, d = x.shape
    out = torch.empty(n_layer, d, d, dtype=x.dtype)
    if x.dtype == torch.float32 and rows * 127**2 < 2**31:  # int32 sums cannot overflow
        edges = [d * i // 4 for i in range(5)]
        for layer in range(n_layer):
            grid = x[layer].mul(1.0 / INT8_STEP).round_().clamp_(-127, 127).to(torch.int8)
            for lo, hi in itertools.pairwise(edges):  # the blocks on and above the diagonal (5/8 of the work)
                torch.mul(torch._int_mm(grid[:, lo:hi].T, grid[:, lo:]), INT8_STEP**2, out=out[layer, lo:hi, lo:])
                out[layer, hi:, lo:hi] = out[layer, lo:hi, hi:].T
            out[layer].diagonal().sub_(rows * INT8_STEP**2 / 12)
        return out
    for layer in range(n_layer):  # numpy's a.T @ a on one buffer is a symmetric rank-k update: half the work
        values = x[layer].contiguous().numpy()
        numpy.dot(values.T, values, out=out[layer].numpy())
    return out


class Covariance:
    """Second moments ``s^T s / m`` of a row sample ``s`` [layer, m, d_model] of standardised inputs.

    Dense ``[layer, d, d]`` when m >= d; otherwise kept implicit and inverted by Woodbury, so wide
    models with few prompts never form a d x d matrix. The dense matrix is factorised in place
    when the preconditioner is made (one d x d buffer per layer, not two: at d_model = 4096 each
    is 64 MiB a layer); products with it then go through the factor.
    """

    def __init__(self, sample: Float[Tensor, "layer prompt d_model"]) -> None:
        self.sample = sample
        self.m, self.d = sample.shape[1], sample.shape[2]
        self.dense = gram(sample).div_(self.m) if self.m >= self.d else None
        self.factor: Tensor | None = None  # lower Cholesky factor of dense / 4 + ridge I, in dense's buffer
        self.ridge = 0.0

    def times(self, b: Float[Tensor, "layer d_model k"]) -> Float[Tensor, "layer d_model k"]:
        # products taken as rows (b^T M): for a few columns that form is 3x faster than M b
        rows = b.transpose(1, 2).contiguous()
        if self.factor is not None:  # dense = 4 (L L^T - ridge I)
            return 4.0 * ((rows @ self.factor) @ self.factor.transpose(1, 2) - self.ridge * rows).transpose(1, 2)
        if self.dense is not None:  # symmetric
            return (rows @ self.dense).transpose(1, 2)
        return self.sample.transpose(1, 2) @ (self.sample @ b) / self.m

    def inverse_hessian0(self, lam: float) -> Callable[[Tensor, list[int]], Tensor]:
        """``(g, layers) -> g (covariance / 4 + lam I)^-1`` for g [len(layers), rows, d_model] (float32).

        Factorises the dense matrix in place: one preconditioner per covariance.
        """
        if self.factor is not None:
            raise RuntimeError("this covariance is already factorised for a preconditioner; make a new Covariance.")
        if self.dense is not None:
            diag = (0.25 * torch.diagonal(self.dense, dim1=-2, dim2=-1) + lam).clamp_min(lam)
            hess = self.dense.mul_(0.25)
            hess.diagonal(dim1=-2, dim2=-1).add_(lam)
            # symmetric, so its transpose is the column-major input LAPACK factorises in place
            info = torch.empty(self.dense.shape[0], dtype=torch.int32)
            chol, _ = torch.linalg.cholesky_ex(hess.transpose(1, 2), out=(hess.transpose(1, 2), info))
            if bool((info != 0).any()):  # numerically indefinite: diagonal fallback for those layers
                chol = torch.where(info[:, None, None] != 0, torch.diag_embed(diag.sqrt()), chol)
            self.dense, self.factor, self.ridge = None, chol, lam

            def solve(g: Tensor, layers: list[int]) -> Tensor:
                # g H^-1 = (L^-T L^-1 g^T)^T: two triangular solves per layer, cheaper than forming
                # the inverse (and than cholesky_solve, which copies the factors on every call)
                out = torch.empty_like(g)
                for i, layer in enumerate(layers):
                    half = torch.linalg.solve_triangular(chol[layer], g[i].T, upper=False)
                    out[i] = torch.linalg.solve_triangular(chol[layer].T, half, upper=True).T
                return out

            return solve
        u = self.sample * math.sqrt(0.25 / self.m)  # hess = lam I + u^T u
        small = torch.bmm(u, u.transpose(1, 2)) + lam * torch.eye(self.m, dtype=u.dtype)
        small_inverse = torch.cholesky_inverse(torch.linalg.cholesky(small))

        def woodbury(g: Tensor, layers: list[int]) -> Tensor:
            basis = u[layers]
            return (g - g @ basis.transpose(1, 2) @ small_inverse[layers] @ basis) / lam

        return woodbury


def standardise(acts: Tensor, order: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """A copy centred and scaled per layer over all prompts (rows in ``order``), with the centre and spread."""
    acts = acts.detach().to(device="cpu")
    n_layer, n, d = acts.shape
    x = torch.empty(n_layer, n, d, dtype=compute_dtype(acts.numel()))
    centre = torch.empty(n_layer, d, dtype=x.dtype)
    spread = torch.empty_like(centre)
    for layer in range(n_layer):
        centre[layer], spread[layer] = standardise_layer(acts[layer], order, out=x[layer])
    return x, centre, spread


def standardise_layer(
    acts: Float[Tensor, "prompt d_model"], order: Tensor | None, out: Float[Tensor, "prompt d_model"]
) -> tuple[Float[Tensor, " d_model"], Float[Tensor, " d_model"]]:
    """Write ``acts`` (rows in ``order``) into ``out``, centred and scaled; return the centre and spread.

    Centre and spread come from a fixed sample of the rows in their given order (a
    reparametrisation: any estimate works); the layer is copied, centred and scaled while in cache.
    """
    rows = row_sample(acts.shape[0], STAT_ROWS, 0)
    sample = acts.index_select(0, rows).to(out.dtype)
    average = torch.full((1, len(rows)), 1.0 / len(rows), dtype=out.dtype)  # column sums as products: much faster
    centre = (average @ sample)[0]
    sample -= centre
    spread = (average @ sample.square_())[0].sqrt()
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    if order is None:
        out.copy_(acts)
    elif acts.dtype == out.dtype:
        torch.index_select(acts, 0, order, out=out)
    else:
        out.copy_(acts.index_select(0, order))
    inverse = 1.0 / spread
    torch.addcmul(-centre * inverse, out, inverse, out=out)  # (acts - centre) / spread in one pass
    return centre, spread
