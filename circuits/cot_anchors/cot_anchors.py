"""Which sentences of the organism's chains of thought matter: computing steps vs filler.

    python circuits/cot_anchors/cot_anchors.py [--out runs/cot_anchors] [--problems 48] [--n 256]

The bundled organism writes counting chains inside ``<think>``: a start sentence, one sentence
per step that computes the running value ("... , so 18 plus 6 is 24 ."), and filler sentences
that compute nothing ("let me think about this carefully ."). For each held-out chain that has
a filler, ``n`` rollouts at T = 0.6 are sampled from every prefix (``interp.resampling``), and
the resampling importance of each sentence (accuracy with it kept minus accuracy when it is
resampled) is averaged in absolute value per role.

Alongside the means, the script reports what limits them:
- sampling noise: every importance is a difference of two accuracies from ``n`` rollouts each;
  the two halves of the rollouts (even / odd) give two independent estimates, whose
  disagreement measures that noise and whose product gives a noise-free mean square;
- the fillers after the last computing step, whose importance must be exactly 0 (the answer is
  already fixed), apart from the fillers inside the chain;
- a bootstrap over problems for the compute / filler ratio.

Runs resume (rollouts are on disk per problem). Writes ``results.json`` to ``--out``.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from interp.io import atomic_write_json
from interp.model import load_model
from interp.organisms.datasets import arithmetic_problems
from interp.resampling import Chain, run_rollouts
from interp.resampling.config import SamplingConfig
from interp.resampling.engine import LocalBackend
from interp.resampling.metrics import accuracy, resampling_importance_accuracy

ANSWER = r"the answer is (\d+)"


def sentence_importance(run, n_sentences: int) -> dict[str, list[float]]:
    """Resampling importance (accuracy) of every sentence, from all rollouts and from each half."""
    groups = run.by_prefix("resample")

    def importance(pick) -> list[float]:
        acc = np.array([accuracy([r["is_correct"] for r in pick(g)]) for g in groups])
        return resampling_importance_accuracy(acc)[:n_sentences].tolist()

    return {"all": importance(lambda g: g), "even": importance(lambda g: g[0::2]), "odd": importance(lambda g: g[1::2])}


def summarise(problems: list[dict], seed: int = 0) -> dict:
    """Per-role statistics over every sentence of every problem (see the module docstring)."""

    def values(role: str, key: str = "all", where=lambda p, i: True, among: list[dict] = problems) -> np.ndarray:
        return np.array([p["importance"][key][i] for p in among for i, r in enumerate(p["roles"]) if r == role and where(p, i)])

    def last_compute(p: dict) -> int:
        return max(i for i, r in enumerate(p["roles"]) if r == "compute")

    out: dict = {}
    for role in ("start", "compute", "filler"):
        v, even, odd = values(role), values(role, "even"), values(role, "odd")
        out[role] = {
            "count": int(len(v)),
            "mean_abs": float(np.abs(v).mean()),
            "noise_mean_abs": float(np.abs(even - odd).mean() / 2),  # |difference of halves| / 2 ~ noise of the full estimate
            "rms_noise_free": float(np.sqrt(max(float((even * odd).mean()), 0.0))),
        }
    trailing = values("filler", where=lambda p, i: i > last_compute(p))
    inside = values("filler", where=lambda p, i: i < last_compute(p))
    out["filler_trailing"] = {"count": int(len(trailing)), "mean_abs": float(np.abs(trailing).mean()) if len(trailing) else 0.0}
    out["filler_inside"] = {"count": int(len(inside)), "mean_abs": float(np.abs(inside).mean()) if len(inside) else 0.0}
    out["ratio_mean_abs"] = _ratio(out["compute"]["mean_abs"], out["filler"]["mean_abs"])
    out["ratio_rms_noise_free"] = _ratio(out["compute"]["rms_noise_free"], out["filler"]["rms_noise_free"])

    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(2000):
        sample = [problems[i] for i in rng.integers(0, len(problems), len(problems))]
        compute, filler = np.abs(values("compute", among=sample)).mean(), np.abs(values("filler", among=sample)).mean()
        ratios.append(_ratio(compute, filler))
    out["ratio_bootstrap_95"] = [float(x) for x in np.percentile(ratios, [2.5, 97.5])]
    return out


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when both are 0 (no sentence mattered), inf when only the denominator is."""
    if denominator == 0:
        return float("nan") if numerator == 0 else float("inf")
    return float(numerator / denominator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/cot_anchors"))
    parser.add_argument("--problems", type=int, default=48, help="held-out chains with at least one filler")
    parser.add_argument("--n", type=int, default=256, help="rollouts per prefix")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backend = LocalBackend(load_model("organism", device="cpu"))
    config = SamplingConfig(n=args.n, batch_size=min(args.n, 128), max_new_tokens=120,
                            temperature=args.temperature, forced=False, seed=0)  # fmt: skip
    pool = [p for p in arithmetic_problems("eval", n=4 * args.problems, seed=0) if "filler" in p["sentence_roles"]]
    problems = []
    for k, problem in enumerate(pool[: args.problems]):
        chain = Chain.from_text(problem["text"] + " ", problem["cot"])
        run = run_rollouts(backend, chain, args.out / f"problem_{k:03d}", config=config, gt_answer=str(problem["answer"]),
                           answer=ANSWER, progress=False)  # fmt: skip
        importance = sentence_importance(run, len(chain.sentences))
        problems.append({"sentences": problem["sentences"], "roles": problem["sentence_roles"], "importance": importance})
        marks = " ".join(f"{r[0]}{v:+.2f}" for r, v in zip(problem["sentence_roles"], importance["all"]))
        print(f"problem {k:3d}: {marks}", flush=True)

    summary = summarise(problems)
    atomic_write_json(args.out / "results.json", {"settings": vars(args) | {"out": str(args.out)}, "summary": summary, "problems": problems})
    print(f"\n{len(problems)} problems, {args.n} rollouts per prefix, T = {args.temperature}")
    print(f"{'role':<16} {'count':>5} {'mean |RI|':>10} {'noise':>7} {'noise-free RMS':>15}")
    for role in ("start", "compute", "filler"):
        s = summary[role]
        print(f"{role:<16} {s['count']:>5} {s['mean_abs']:>10.3f} {s['noise_mean_abs']:>7.3f} {s['rms_noise_free']:>15.3f}")
    for part in ("filler_inside", "filler_trailing"):
        print(f"{part:<16} {summary[part]['count']:>5} {summary[part]['mean_abs']:>10.3f}")
    lo, hi = summary["ratio_bootstrap_95"]
    print(f"compute / filler: mean |RI| {summary['ratio_mean_abs']:.2f}x (95% bootstrap over problems {lo:.2f}-{hi:.2f}), "
          f"noise-free RMS {summary['ratio_rms_noise_free']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
