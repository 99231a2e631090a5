"""Probe training against a per-layer scikit-learn loop, side by side in one run.

Data: synthetic h_last, 12 layers x 4096 prompts x 768 dims (``interp.probes.synthetic_activations``):
a class direction planted in every layer, its Mahalanobis separation growing with depth (0 at
layer 0, 3.5 two thirds of the way in), a large offset and a few high-variance dimensions, and a
covariance spectrum decaying as k^-1.5 by default (residual streams of trained models have
steeply decaying spectra; the decay sets how hard the problems are for lbfgs). Pass
--spectrum 1.0 for a better-conditioned (easier for scikit-learn) case.

Both sides get the same stratified folds (5-fold CV on 80%, 20% held out, from
``interp.probes.stratified_folds``), the same C and the same stopping rule (max |gradient| <= 1e-4):
  interp:  train_probes(acts, labels, cv=5, holdout=0.2, C=1.0)  -- all layers and folds in one batch
  sklearn: for each layer, for each fold and the final fit: StandardScaler + LogisticRegression(lbfgs)
Prints per-layer accuracy / AUROC of both, the largest gap (target <= 0.01) and
ratio = sklearn seconds / interp seconds (target >= 10), in wall-clock and in CPU time, and the
byte floor of interp's run: every L-BFGS iteration reads the activations twice (two batched
products over all layers and folds; one more read for the statistics), at the memory bandwidth
measured in the same process. ``--model smollm2-135m-instruct`` takes the layers and width of that
model (30 x 576; default: the GPT-2-small shape, 12 x 768); ``--prompts`` takes several sizes. Both
sides run single-threaded (torch and the BLAS behind scikit-learn limited to --threads), so on
a machine shared with other jobs the CPU-time ratio is the steadier one; each side runs once
untimed first (imports, kernel set-up), then the timed repeats alternate the two sides so that
load changes hit both, and the medians are compared. Run it as

    OMP_NUM_THREADS=1 python bench/probes.py [--model smollm2-135m-instruct] [--prompts 1024 4096] [--spectrum 1.0 1.5] [--repeats 5]
"""

import argparse
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from interp.probes import stratified_folds, synthetic_activations, train_probes
from interp.probes.solver import GRAM_ROWS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache import matmul_rate  # noqa: E402  (the shared matmul timer)


def separation_profile(n_layers: int) -> list[float]:
    """0 at the first layer, rising to 3.5 two thirds of the way in, 3.0 at the last."""
    peak = max(1, round(2 * (n_layers - 1) / 3))
    values = [3.5 * min(layer, peak) / peak for layer in range(n_layers)]
    values[-1] = min(values[-1], 3.0) if n_layers > 2 else values[-1]
    return values


def sklearn_loop(acts: torch.Tensor, y: np.ndarray, fold: np.ndarray, cv: int, C: float, max_iter: int) -> dict:
    """The per-layer loop a user would write: scaler + logistic regression per fold, then the held-out fit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    n_layers = acts.shape[0]
    acc = np.zeros((n_layers, cv + 1))
    auc = np.zeros((n_layers, cv + 1))
    iters = []
    for layer in range(n_layers):
        x = acts[layer].numpy()  # float32, as a store hands it out
        for f in list(range(cv)) + [-1]:
            train = (fold != f) & (fold != -1) if f >= 0 else fold != -1
            test = fold == f
            scaler = StandardScaler().fit(x[train])
            model = LogisticRegression(C=C, max_iter=max_iter, tol=1e-4).fit(scaler.transform(x[train]), y[train])
            p = model.predict_proba(scaler.transform(x[test]))[:, 1]
            col = f if f >= 0 else cv
            acc[layer, col] = ((p > 0.5) == y[test]).mean()
            auc[layer, col] = roc_auc_score(y[test], p)
            iters.append(int(model.n_iter_[0]))
    return {"accuracy": acc, "auroc": auc, "iters": iters}


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second of one read through a float32 tensor larger than the caches (best of ``repeats``)."""
    data = torch.ones(megabytes * 2**20 // 4)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def model_shape(name: str) -> tuple[int, int]:
    """(layers, d_model) of a registered model or a Hugging Face directory, from its config alone."""
    import json

    from interp.model import resolve_model

    directory = Path(name) if Path(name).exists() else Path(resolve_model(name)[0])
    config = json.loads((directory / "config.json").read_text())
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    return int(layers), int(config.get("hidden_size", config.get("n_embd")))


def run(spectrum: float, n_prompts: int, args) -> float:
    acts, labels = synthetic_activations(
        n_layers=args.layers, n_prompts=n_prompts, d_model=args.dims,
        separation=separation_profile(args.layers), spectrum=spectrum, seed=args.seed,
    )  # fmt: skip
    print(f"\n== spectrum k^-{spectrum}: {args.layers} layers x {n_prompts} prompts x {args.dims} dims, "
          f"{args.cv}-fold CV + 20% held out, C={args.C} ==")  # fmt: skip
    y_t = torch.tensor([lab == "harmful" for lab in labels]).long()
    fold = stratified_folds(y_t, cv=args.cv, holdout=0.2, seed=args.seed).numpy()
    y = y_t.numpy()

    # one untimed run of each side first: imports and one-time library set-up (kernel JIT, thread
    # pools) are not what the ratio measures
    train_probes(acts, labels, cv=args.cv, holdout=0.2, C=args.C, seed=args.seed, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sklearn_loop(acts[:1], y, fold, args.cv, args.C, args.sklearn_max_iter)
    times = {side: {"wall": [], "cpu": []} for side in ("interp", "sklearn")}
    for repeat in range(args.repeats):
        with timed(times["interp"]):
            result = train_probes(acts, labels, cv=args.cv, holdout=0.2, C=args.C, seed=args.seed, progress=False)
        assert np.array_equal(result.fold.numpy(), fold), "both sides must use the same folds"
        with timed(times["sklearn"]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning is reported through n_iter below
            ref = sklearn_loop(acts, y, fold, args.cv, args.C, args.sklearn_max_iter)
        ours, theirs = times["interp"], times["sklearn"]
        print(f"repeat {repeat}: interp {ours['wall'][-1]:7.2f} s wall {ours['cpu'][-1]:7.2f} s CPU   "
              f"scikit-learn {theirs['wall'][-1]:7.2f} s wall {theirs['cpu'][-1]:7.2f} s CPU")  # fmt: skip

    ours_acc = np.concatenate([result.cv_accuracy.numpy(), result.holdout_accuracy.numpy()[:, None]], 1)
    ours_auc = np.concatenate([result.cv_auroc.numpy(), result.holdout_auroc.numpy()[:, None]], 1)
    print(f"{'layer':>5}  {'interp acc':>10} {'sklearn acc':>11}  {'interp auroc':>12} {'sklearn auroc':>13}  {'held-out acc (i/s)':>18}")
    for layer in range(args.layers):
        print(f"{layer:>5}  {ours_acc[layer, :-1].mean():10.4f} {ref['accuracy'][layer, :-1].mean():11.4f}  "
              f"{ours_auc[layer, :-1].mean():12.4f} {ref['auroc'][layer, :-1].mean():13.4f}  "
              f"{ours_acc[layer, -1]:8.4f} / {ref['accuracy'][layer, -1]:.4f}")  # fmt: skip
    gap_acc = np.abs(ours_acc[:, :-1].mean(1) - ref["accuracy"][:, :-1].mean(1)).max()
    gap_auc = np.abs(ours_auc[:, :-1].mean(1) - ref["auroc"][:, :-1].mean(1)).max()
    gap_hold = np.abs(ours_acc[:, -1] - ref["accuracy"][:, -1]).max()
    gap_hold_auc = np.abs(ours_auc[:, -1] - ref["auroc"][:, -1]).max()
    iters = np.array(ref["iters"])
    print(f"max per-layer gap: CV accuracy {gap_acc:.4f}, CV AUROC {gap_auc:.4f}, held-out accuracy {gap_hold:.4f}, "
          f"held-out AUROC {gap_hold_auc:.4f}  (target <= 0.01)")  # fmt: skip
    print(f"best layer: interp {result.best_layer}, scikit-learn {int(ref['auroc'][:, :-1].mean(1).argmax())}")
    print(f"iterations: interp {result.n_iter} (batched L-BFGS, all {args.layers * (args.cv + 1)} problems); "
          f"scikit-learn lbfgs median {int(np.median(iters))}, max {iters.max()} per problem"
          f"{' (some hit max_iter)' if iters.max() >= args.sklearn_max_iter else ''}")  # fmt: skip
    median = {side: {clock: statistics.median(values) for clock, values in clocks.items()} for side, clocks in times.items()}
    floor = (2 * result.n_iter + 1) * acts.numel() * acts.element_size() / memory_bandwidth()
    gram_flops = 2 * args.layers * min(GRAM_ROWS, int((fold != -1).sum())) * args.dims**2
    print(f"byte floor: {(2 * result.n_iter + 1)} reads of the activations ({acts.numel() * acts.element_size() / 1e6:.0f} MB) = {floor:.2f} s "
          f"at the memory bandwidth measured here; interp at {median['interp']['wall'] / floor:.1f}x the floor. Not in it: the "
          f"preconditioner's covariance, {gram_flops / 1e9:.0f} GFLOP (an int8 product) = {gram_flops / matmul_rate():.2f} s at the fp32 matmul rate")  # fmt: skip
    for clock in ("wall", "cpu"):
        print(f"{clock:>4} time: interp {median['interp'][clock]:7.2f} s, scikit-learn {median['sklearn'][clock]:7.2f} s "
              f"(median of {args.repeats})   RATIO (scikit-learn / interp): "
              f"{median['sklearn'][clock] / median['interp'][clock]:.1f}x  (target >= 10)")  # fmt: skip
    return median["sklearn"]["cpu"] / median["interp"]["cpu"]


@contextmanager
def timed(into: dict):
    """Append the wall-clock and CPU seconds of the block to ``into["wall"]`` and ``into["cpu"]``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into["wall"].append(time.perf_counter() - wall)
    into["cpu"].append(time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="take --layers and --dims from this model's config (e.g. smollm2-135m-instruct)")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--prompts", type=int, nargs="+", default=[4096], help="prompts per run: the ratio at each size")
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--spectrum", type=float, nargs="+", default=[1.5], help="covariance eigenvalue decay exponent(s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side (the median is reported)")
    parser.add_argument("--threads", type=int, default=1, help="threads for both sides")
    parser.add_argument("--sklearn-max-iter", type=int, default=2000, help="high enough for lbfgs to converge")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.model:
        args.layers, args.dims = model_shape(args.model)

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        print(f"threads: torch {torch.get_num_threads()}, BLAS/OpenMP limited to {args.threads}")
        ratios = {(spectrum, n): run(spectrum, n, args) for spectrum in args.spectrum for n in args.prompts}
    if len(ratios) > 1:
        print("\nCPU-time ratio (scikit-learn / interp) as the work grows: "
              + ", ".join(f"k^-{spectrum} {n} prompts {ratio:.1f}x" for (spectrum, n), ratio in ratios.items()))  # fmt: skip


if __name__ == "__main__":
    main()
