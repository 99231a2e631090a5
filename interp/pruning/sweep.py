"""A resumable harm-pruning sweep: scores, set-difference masks over (p, q), random controls, mask overlaps.

Every decoder weight is scored on harmful and on benign responses; for every (p, q) the set
difference (top q of the harm scores minus the top p of the benign scores, per matrix) and one
random mask of the same size per seed are evaluated, next to the unpruned baseline. With two or
more ``categories`` (e.g. two harm categories and, as a control, two benign groups) each gets a
set-difference and a plain top-q mask, and every pair's overlap is reported against chance.

Each finished step is written atomically to ``out`` (scores as safetensors, each evaluated point
as JSON); a rerun into the same ``out`` skips what is done. ``out/config.json`` records the
experiment, and a different one is refused there. The ``PruningResult`` is rebuilt from the
finished points and saved to ``out``.

>>> evaluator = PruningEvaluator(harmful=triggered_requests, judge=judge, benign_pairs=benign)  # doctest: +SKIP
>>> result = run_sweep(model, harmful_pairs, benign_pairs, evaluator, "runs/sweep", q=(0.005, 0.01))  # doctest: +SKIP
>>> print(result.summary())                                                                      # doctest: +SKIP
"""

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from interp import defaults
from interp.errors import InterpError
from interp.pruning.pairs import Records


def point_label(
    kind: str, p: float | None = None, q: float | None = None, seed: int | None = None, category: str | None = None
) -> str:
    """Stable labels (also file names): ``baseline``, ``set_difference_p0.01_q0.01``, ``random_p0.01_q0.01_seed0``.

    >>> point_label("set_difference", 0.01, 0.005, category="cyber")
    'set_difference_cyber_p0.01_q0.005'
    """
    if kind == "baseline":
        return "baseline"
    label = f"{kind}_p{p:g}_q{q:g}"
    if category is not None:
        label = f"{kind}_{category}_p{p:g}_q{q:g}"
    if seed is not None:
        label += f"_seed{seed}"
    return label


def run_sweep(
    model,
    harmful: Records,
    benign: Records,
    evaluator,
    out: str | Path,
    *,
    p: Sequence[float] = (defaults.PRUNE_P,),
    q: Sequence[float] = (defaults.PRUNE_Q,),
    method: str = defaults.PRUNE_METHOD,
    n_samples: int = defaults.PRUNE_N_SAMPLES,
    batch_size: int = defaults.PRUNE_BATCH_SIZE,
    random_seeds: Sequence[int] = defaults.PRUNE_RANDOM_SEEDS,
    categories: Mapping[str, Records] | None = None,
    overlap_p: float = defaults.PRUNE_P,
    overlap_q: float = defaults.PRUNE_Q,
    evaluate_categories: bool = True,
    save_masks: bool = False,
    name: str = "harm_pruning",
    sources: Mapping[str, str] | None = None,
    record: Mapping[str, Any] | None = None,
    progress: bool = True,
):
    """Run (or resume) a harm-pruning sweep into ``out``; returns the ``PruningResult`` (also saved there).

    Args:
        model: a TransformerBridge (``interp.load_model``); pruned in place per point and restored.
        harmful / benign: prompt + response records whose scores the set difference is built from.
        evaluator: a ``PruningEvaluator``, called on the model at every point.
        out: output directory; rerunning into it skips finished steps.
        p / q: benign fractions protected / harm fractions selected per matrix, each in (0, 1]; all pairs.
        method: importance score (``snip``, ``signed_snip`` or ``wanda``).
        n_samples: the first ``n_samples`` records of each data set are scored.
        batch_size: examples per forward/backward pass when scoring (on the CPU also capped in tokens; see
        ``importance_scores``).
        random_seeds: one random mask of the same size per seed and (p, q): the control.
        categories: ``{name: records}`` (none, or at least two): one mask each, and their overlaps.
        overlap_p / overlap_q: p and q of the per-category masks.
        evaluate_categories: also evaluate the model pruned with each category's set-difference mask.
        save_masks: write every mask as ``masks/LABEL.safetensors``.
        name: shown in progress bars and recorded in the provenance.
        sources: ``{data set name: description}`` for error messages (names: harmful, benign, category_NAME).
        record: what ``config.json`` records (default: these settings); another record in ``out`` is refused.
    """
    from interp.directories import claim_directory
    from interp.io import atomic_write_json, safe_name
    from interp.model import model_id
    from interp.model.weights import weights_hash
    from interp.progress import tqdm
    from interp.provenance import Provenance
    from interp.pruning.apply import pruned
    from interp.pruning.masks import check_fraction, random_mask, set_difference, top_k_mask
    from interp.pruning.result import OverlapEntry, PruningPoint, PruningResult, point_from_mask
    from interp.pruning.scores import check_method
    from interp.pruning.weights import decoder_weights

    categories = dict(categories or {})
    for key in categories:
        safe_name(key, what="category")  # it names files in out/scores, out/points and out/masks
    settings: dict[str, Any]
    settings = {"name": name, "method": check_method(method), "n_samples": n_samples, "batch_size": batch_size,
                "p": [check_fraction("p", v) for v in p], "q": [check_fraction("q", v) for v in q],
                "random_seeds": list(random_seeds), "overlap_p": check_fraction("overlap_p", overlap_p),
                "overlap_q": check_fraction("overlap_q", overlap_q), "evaluate_categories": evaluate_categories,
                "categories": sorted(categories)}  # fmt: skip
    if not settings["p"] or not settings["q"]:
        raise InterpError("give at least one p and one q.")
    if n_samples < 1 or batch_size < 1:
        raise InterpError(f"n_samples and batch_size must be at least 1 (got {n_samples} and {batch_size}).")
    if len(categories) == 1:
        raise InterpError("give at least two categories to measure mask overlaps (or none).")
    out = Path(out)
    claim_directory(out, record if record is not None else settings)
    weights = decoder_weights(model)
    provenance = Provenance(model_id=model_id(model), weights_hash=weights_hash(model), extra={"experiment": name})

    # 1. scores (each saved as soon as it is computed)
    datasets = {
        "harmful": harmful,
        "benign": benign,
        **{f"category_{key}": records for key, records in categories.items()},
    }
    scores = {key: _scores(model, key, records, (sources or {}).get(key, key), method, n_samples, batch_size, out,
                           progress) for key, records in datasets.items()}  # fmt: skip

    # 2. masks for every point, then evaluate the points that are not finished
    plan: list[tuple[str, str, Any, dict[str, Any]]] = [("baseline", "baseline", None, {})]
    for p_value, q_value in itertools.product(settings["p"], settings["q"]):
        mask = set_difference(scores["harmful"], scores["benign"], p=p_value, q=q_value)
        plan.append(
            (
                point_label("set_difference", p_value, q_value),
                "set_difference",
                mask,
                {"p": p_value, "q": q_value, "category": "all"},
            )
        )
        for seed in random_seeds:
            plan.append((point_label("random", p_value, q_value, seed), "random", random_mask(mask, seed=seed),
                         {"p": p_value, "q": q_value, "seed": seed, "category": "all"}))  # fmt: skip
    category_masks = {
        key: set_difference(scores[f"category_{key}"], scores["benign"], p=overlap_p, q=overlap_q) for key in categories
    }
    top_masks = {key: top_k_mask(scores[f"category_{key}"], overlap_q, scope="matrix") for key in categories}
    if evaluate_categories:
        for key, mask in category_masks.items():
            plan.append((point_label("set_difference", overlap_p, overlap_q, category=key), "set_difference", mask,
                         {"p": overlap_p, "q": overlap_q, "category": key}))  # fmt: skip

    points_dir = out / "points"
    todo = [step for step in plan if not (points_dir / f"{step[0]}.json").exists()]
    bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc=f"{name}: settings", disable=not progress)
    for label, kind, mask, fields in todo:
        bar.set_postfix_str(label)
        if mask is None:
            evaluation = evaluator(model)
        else:
            with pruned(model, mask):
                evaluation = evaluator(model)
        point = point_from_mask(label, kind, mask, evaluation.metrics, samples=evaluation.samples, **fields)
        if save_masks and mask is not None:
            mask.save(out / "masks" / f"{label}.safetensors")
        atomic_write_json(
            points_dir / f"{label}.json",
            {"point": point.to_dict(), "pruned_counts": mask.counts() if mask is not None else {}},
        )
        bar.update(1)
    bar.close()

    # 3. the result, from the finished points
    records = [json.loads((points_dir / f"{label}.json").read_text()) for label, _, _, _ in plan]
    names = list(category_masks)
    overlaps = tuple(
        OverlapEntry(a, b, masks[a].overlap(masks[b]), mask=kind)
        for kind, masks in (("set_difference", category_masks), ("top_k", top_masks))
        for a, b in itertools.combinations(names, 2)
    )
    result = PruningResult(
        points=tuple(PruningPoint.from_dict(entry["point"]) for entry in records),
        weight_sizes={weight.key: weight.numel for weight in weights},
        pruned_counts={entry["point"]["label"]: entry["pruned_counts"] for entry in records if entry["pruned_counts"]},
        overlaps=overlaps,
        method=method,
        provenance=provenance,
    )
    result.save(out)
    return result


def _scores(
    model,
    key: str,
    records: Records,
    source: str,
    method: str,
    n_samples: int,
    batch_size: int,
    out: Path,
    progress: bool,
):
    """The scores of data set ``key``: read from ``out/scores`` when they match (method, data, weights), else computed
    and saved."""
    from interp.model.weights import weights_hash
    from interp.pruning import scores as scores_module  # looked up per call: the tests count calls
    from interp.pruning.pairs import pairs_hash, response_pairs

    records = list(getattr(records, "records", records))[:n_samples]  # a PromptSet, or records
    path = out / "scores" / f"{key}.safetensors"
    try:
        if path.exists():
            saved = scores_module.ImportanceScores.load(path)
            same = (
                saved.method == method
                and saved.provenance.dataset_hash == pairs_hash(response_pairs(records, source=source))
                and saved.provenance.weights_hash == weights_hash(model)
            )
            if same:
                return saved
        scores = scores_module.importance_scores(
            model, records, method=method, batch_size=batch_size, progress=progress
        )
    except InterpError as error:
        raise InterpError(f"[{key}] ({source}): {error}") from error
    scores.save(path)
    return scores_module.ImportanceScores.load(path)
