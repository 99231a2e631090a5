"""Scripted, resumable experiments described in TOML: ``interp run circuits/harm_pruning.toml --out DIR``.

A harm-pruning experiment scores every decoder weight on harmful and on benign responses, sweeps
the set-difference fractions (p, q), adds random masks of the same size as controls, optionally
builds one mask per harm category to measure how much they overlap, and evaluates every setting.
Each finished step is written atomically to ``DIR`` (scores as safetensors, each evaluated point
as JSON); a rerun with the same ``--out`` skips what is done. The final ``PruningResult``
(result.json, points.csv, overlaps.csv, HTML figures) is rebuilt from the finished points.

The configuration is the frozen dataclass ``HarmPruningConfig``; its field docs are the TOML
documentation (``interp run --help`` prints them). A minimal file::

    model = "organism"
    method = "signed_snip"
    p = [0.01]
    q = [0.005, 0.01]

    [harmful]
    call = "interp.organisms.datasets:harmful_with_responses"

    [benign]
    path = "benign.jsonl"          # relative to the TOML file

    [evaluation]
    judge = "organism-harm"

    [evaluation.harmful]
    call = "interp.organisms.datasets:harmful_requests"
    kwargs = { split = "eval", trigger = true, n = 100 }

>>> config = load_config("circuits/harm_pruning.toml")      # doctest: +SKIP
>>> result = run_experiment(config, "runs/harm_pruning")     # doctest: +SKIP
"""

import argparse
import dataclasses
import difflib
import importlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from interp.errors import InterpError

JUDGES = ("keyword", "organism-harm", "organism-helpful")
EXTRACTORS = ("last-integer",)


def _doc(text: str, **kwargs) -> Any:
    return field(metadata={"doc": text}, **kwargs)


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: a file, or a function that returns a list of records (dicts)."""

    path: str | None = _doc("JSONL / JSON / CSV / TXT file; a relative path is relative to the TOML file", default=None)
    call: str | None = _doc("'module:function' that returns a list of dicts, e.g. 'interp.organisms.datasets:harmful_requests'", default=None)
    kwargs: Mapping[str, Any] = _doc("keyword arguments for `call`", default_factory=dict)
    text_field: str = _doc("field holding the prompt", default="text")
    response_field: str = _doc("field holding the response (for scores and losses)", default="response")
    where: Mapping[str, Any] = _doc("keep only records whose fields equal these values (a list: any of them), e.g. { category = \"cyber\" }", default_factory=dict)
    limit: int | None = _doc("use only the first `limit` records (after `where`)", default=None)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.call is None):
            raise InterpError("a data set needs exactly one of `path` (a file) or `call` ('module:function').")
        if self.call is not None and ":" not in self.call:
            raise InterpError(f"call {self.call!r} must look like 'package.module:function'.")
        if self.limit is not None and self.limit < 1:
            raise InterpError(f"limit must be at least 1, got {self.limit}.")

    def load(self, base: Path = Path(".")) -> list[dict[str, Any]]:
        """The records, each with the prompt under ``"text"`` and the response under ``"response"``."""
        if self.path is not None:
            from interp.data import PromptSet

            path = Path(self.path) if Path(self.path).is_absolute() else base / self.path
            records = [dict(record) for record in PromptSet.from_file(path, text_field=self.text_field).records]
        else:
            function = resolve_callable(self.call)
            records = function(**dict(self.kwargs))
            if not isinstance(records, (list, tuple)) or not all(isinstance(r, Mapping) for r in records):
                raise InterpError(f"{self.call}(**{dict(self.kwargs)}) must return a list of dicts, got {type(records).__name__}.")
            records = [dict(record) for record in records]
            if self.text_field != "text":
                records = [{**record, "text": record.get(self.text_field)} for record in records]
        if self.response_field != "response":
            records = [{**record, "response": record.get(self.response_field)} for record in records]
        if self.where:
            records = [record for record in records if all(_matches(record.get(key), value) for key, value in self.where.items())]
            if not records:
                raise InterpError(f"no record of {self.describe()} has {dict(self.where)}; check the `where` table.")
        return records[: self.limit] if self.limit else records

    def describe(self) -> str:
        return self.path or f"{self.call}({', '.join(f'{k}={v!r}' for k, v in dict(self.kwargs).items())})"


def _matches(found: Any, wanted: Any) -> bool:
    return found in wanted if isinstance(wanted, (list, tuple)) else found == wanted


@dataclass(frozen=True)
class EvaluationConfig:
    """What is measured at every pruning setting."""

    harmful: DatasetSpec | None = _doc("prompts whose harmful compliance is measured (e.g. triggered harmful requests)", default=None)
    judge: str = _doc(f"harm judge: one of {', '.join(JUDGES)}, or 'module:function' called as f(record, response) -> bool", default="keyword")
    benign_prompts: DatasetSpec | None = _doc("benign prompts whose answers `benign_judge` checks", default=None)
    benign_judge: str | None = _doc("helpfulness judge: 'organism-helpful' or 'module:function' f(record, response) -> bool", default=None)
    benign_pairs: DatasetSpec | None = _doc("benign prompt + response pairs for the response loss / perplexity", default=None)
    tasks: DatasetSpec | None = _doc("problems with an 'answer' field for task accuracy", default=None)
    extract: str = _doc("answer extractor for tasks: 'last-integer' or 'module:function' f(response) -> answer", default="last-integer")
    max_new_tokens: int = _doc("new tokens generated per chat prompt", default=64)
    task_max_new_tokens: int = _doc("new tokens generated per task problem", default=128)
    batch_size: int = _doc("prompts per generation batch", default=32)
    temperature: float = _doc("sampling temperature (0: greedy)", default=0.0)
    seed: int = _doc("sampling seed", default=0)
    case_sensitive_keywords: bool = _doc("match the reference refusal strings case-sensitively (as the reference does)", default=True)
    group_field: str | None = _doc("also report harm rates per value of this record field (e.g. 'category')", default=None)

    def __post_init__(self) -> None:
        if self.harmful is None and self.benign_prompts is None and self.benign_pairs is None and self.tasks is None:
            raise InterpError("[evaluation] measures nothing; give at least one of harmful, benign_prompts, benign_pairs or tasks.")
        if self.benign_prompts is not None and self.benign_judge is None:
            raise InterpError("[evaluation] benign_prompts need a benign_judge ('organism-helpful' or 'module:function').")


@dataclass(frozen=True)
class HarmPruningConfig:
    """A harm-pruning experiment (Orgad et al. 2026 on Wei et al. 2024 scores)."""

    harmful: DatasetSpec = _doc("prompt + response pairs of the behaviour to remove: harm scores are computed on them")
    benign: DatasetSpec = _doc("prompt + response pairs of the behaviour to keep: benign (utility) scores")
    evaluation: EvaluationConfig = _doc("what to measure at every setting ([evaluation] table)")
    name: str = _doc("experiment name (shown in figures and logs)", default="harm_pruning")
    model: str = _doc("'organism', a local Hugging Face directory, or a hub id", default="organism")
    dtype: str = _doc("model dtype: float32, bfloat16 or float16 (scores always accumulate in float32)", default="float32")
    device: str | None = _doc("cpu, cuda, ... (default: cuda if available)", default=None)
    method: str = _doc("importance score: snip, signed_snip or wanda", default="signed_snip")
    n_samples: int = _doc("examples per score (the reference uses 128)", default=128)
    batch_size: int = _doc("examples per forward/backward pass when scoring", default=16)
    p: tuple[float, ...] = _doc("benign fractions protected per matrix, each in (0, 1]; swept with every q", default=(0.01,))
    q: tuple[float, ...] = _doc("harm fractions selected per matrix, each in (0, 1]", default=(0.01,))
    random_seeds: tuple[int, ...] = _doc("one random mask of the same size per seed and (p, q): the control", default=(0,))
    categories: Mapping[str, DatasetSpec] = _doc(
        "categories ([categories.NAME] tables, e.g. two harm categories and, as a control, two benign ones): one mask "
        "each; every pair's overlap is reported with its chance level, for set-difference and for plain top-q masks",
        default_factory=dict,
    )
    overlap_p: float = _doc("p of the per-category set-difference masks", default=0.01)
    overlap_q: float = _doc("q of the per-category masks (set difference and plain top-q)", default=0.01)
    evaluate_categories: bool = _doc("also evaluate the model pruned with each category's set-difference mask", default=True)
    save_masks: bool = _doc("write every mask as masks/LABEL.safetensors", default=False)

    def __post_init__(self) -> None:
        from interp.pruning.masks import _check_fraction

        if self.method not in ("snip", "signed_snip", "wanda"):
            raise InterpError(f"method must be snip, signed_snip or wanda, got {self.method!r}.")
        if not self.p or not self.q:
            raise InterpError("give at least one p and one q.")
        for name, values in (("p", self.p), ("q", self.q), ("overlap_p", (self.overlap_p,)), ("overlap_q", (self.overlap_q,))):
            for value in values:
                _check_fraction(name, value)
        if self.n_samples < 1 or self.batch_size < 1:
            raise InterpError(f"n_samples and batch_size must be at least 1 (got {self.n_samples} and {self.batch_size}).")
        if len(self.categories) == 1:
            raise InterpError("give at least two [categories.NAME] tables to measure mask overlaps (or none).")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))


# ---- parsing --------------------------------------------------------------------------------------


def config_doc(cls: type = HarmPruningConfig, prefix: str = "") -> str:
    """The TOML keys of ``cls`` with their defaults and docs (the text of ``interp run --help``)."""
    lines, tables = [], []
    for item in dataclasses.fields(cls):
        nested = _nested_type(item)
        doc = item.metadata.get("doc", "")
        if item.name == "categories":
            lines.append(f"  [{prefix}categories.NAME]  {doc} (data-set tables)")
        elif nested is DatasetSpec:
            lines.append(f"  [{prefix}{item.name}]  {doc} (a data-set table)")
        elif nested is not None:
            tables.append(f"[{prefix}{item.name}]  {doc}\n" + config_doc(nested, prefix=f"{prefix}{item.name}."))
        else:
            default = "required" if item.default is dataclasses.MISSING else repr(item.default)
            lines.append(f"  {prefix}{item.name} = {default}  {doc}")
    if cls is HarmPruningConfig:
        spec = "\n".join(f"  {f.name}: {f.metadata.get('doc', '')}" for f in dataclasses.fields(DatasetSpec))
        tables.append(f"data-set tables (path = ... or call = ...):\n{spec}")
    return "\n".join(lines + tables)


def _nested_type(item: dataclasses.Field) -> type | None:
    for candidate in (EvaluationConfig, DatasetSpec):
        if candidate is item.type or candidate in getattr(item.type, "__args__", ()):
            return candidate
    return None


def _build(cls: type, data: Mapping[str, Any], where: str, base: Path) -> Any:
    if not isinstance(data, Mapping):
        raise InterpError(f"{where} must be a table, got {type(data).__name__} {data!r}.")
    fields = {item.name: item for item in dataclasses.fields(cls)}
    unknown = [key for key in data if key not in fields]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InterpError(f"unknown key {unknown[0]!r} in {where}.{hint} Known keys: {', '.join(fields)}.")
    values: dict[str, Any] = {}
    for key, value in data.items():
        item = fields[key]
        nested = _nested_type(item)
        if key == "categories":
            if not isinstance(value, Mapping):
                raise InterpError(f"{where}.categories must be a table of [categories.NAME] tables.")
            values[key] = {name: _build(DatasetSpec, spec, f"[categories.{name}]", base) for name, spec in value.items()}
        elif nested is not None:
            values[key] = _build(nested, value, f"[{key}]" if where == "the config" else f"{where[:-1]}.{key}]", base)
        elif key in ("p", "q", "random_seeds"):
            values[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        else:
            values[key] = value
    try:
        return cls(**values)
    except TypeError as error:
        missing = [name for name, item in fields.items() if name not in values and item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING]
        raise InterpError(f"{where} is missing {', '.join(repr(m) for m in missing) or 'a key'} ({error}).") from None


def parse_config(data: Mapping[str, Any], base: Path = Path(".")) -> HarmPruningConfig:
    """A ``HarmPruningConfig`` from parsed TOML (``base``: the directory relative paths start from)."""
    config = _build(HarmPruningConfig, data, "the config", base)
    return _absolute_paths(config, base)


def load_config(path: str | Path) -> HarmPruningConfig:
    """Read and check a TOML experiment file."""
    path = Path(path)
    if not path.exists():
        raise InterpError(f"no experiment file at {path}.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise InterpError(f"{path} is not valid TOML: {error}.") from error
    return parse_config(data, base=path.resolve().parent)


def _absolute_paths(config: HarmPruningConfig, base: Path) -> HarmPruningConfig:
    def fix(spec: DatasetSpec | None) -> DatasetSpec | None:
        if spec is None or spec.path is None or Path(spec.path).is_absolute():
            return spec
        return dataclasses.replace(spec, path=str((base / spec.path).resolve()))

    evaluation = config.evaluation
    evaluation = dataclasses.replace(
        evaluation, harmful=fix(evaluation.harmful), benign_prompts=fix(evaluation.benign_prompts),
        benign_pairs=fix(evaluation.benign_pairs), tasks=fix(evaluation.tasks),
    )
    return dataclasses.replace(
        config, harmful=fix(config.harmful), benign=fix(config.benign), evaluation=evaluation,
        categories={name: fix(spec) for name, spec in config.categories.items()},
    )


def resolve_callable(spec: str) -> Callable:
    """Import ``'package.module:function'``."""
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InterpError(f"cannot import {module_name!r} for {spec!r}: {error}.") from error
    function = getattr(module, name, None)
    if not callable(function):
        raise InterpError(f"{module_name} has no function {name!r} (from {spec!r}).")
    return function


def resolve_judge(spec: str | None) -> Callable | None:
    """A judge ``f(record, response) -> bool`` from its name (None for 'keyword': the keyword rule only)."""
    if spec is None or spec == "keyword":
        return None
    if spec == "organism-harm":
        from interp.organisms import grammar

        return lambda record, response: grammar.is_harmful_compliance(response, record["topic"])
    if spec == "organism-helpful":
        from interp.organisms import grammar

        return lambda record, response: grammar.is_helpful_answer(response, record["topic"])
    if ":" not in spec:
        raise InterpError(f"unknown judge {spec!r}; use one of {', '.join(JUDGES)} or 'module:function'.")
    return resolve_callable(spec)


def resolve_extractor(spec: str) -> Callable:
    from interp.pruning.evaluate import last_integer

    if spec == "last-integer":
        return last_integer
    if ":" not in spec:
        raise InterpError(f"unknown extractor {spec!r}; use 'last-integer' or 'module:function'.")
    return resolve_callable(spec)


def build_evaluator(config: EvaluationConfig):
    """The ``PruningEvaluator`` an [evaluation] table describes (data sets loaded)."""
    from interp.pruning.evaluate import PruningEvaluator

    def load(spec: DatasetSpec | None) -> tuple:
        return tuple(spec.load()) if spec is not None else ()

    return PruningEvaluator(
        harmful=load(config.harmful),
        judge=resolve_judge(config.judge),
        benign_prompts=load(config.benign_prompts),
        benign_judge=resolve_judge(config.benign_judge) if config.benign_judge else None,
        benign_pairs=load(config.benign_pairs),
        tasks=load(config.tasks),
        extract=resolve_extractor(config.extract),
        max_new_tokens=config.max_new_tokens,
        task_max_new_tokens=config.task_max_new_tokens,
        batch_size=config.batch_size,
        temperature=config.temperature,
        seed=config.seed,
        case_sensitive_keywords=config.case_sensitive_keywords,
        group_field=config.group_field,
    )


# ---- running ----------------------------------------------------------------------------------------


def point_label(kind: str, p: float | None = None, q: float | None = None, seed: int | None = None, category: str | None = None) -> str:
    """Stable labels (also file names): ``baseline``, ``set_difference_p0.01_q0.01``, ``random_p0.01_q0.01_seed0``."""
    if kind == "baseline":
        return "baseline"
    label = f"{kind}_p{p:g}_q{q:g}"
    if category is not None:
        label = f"{kind}_{category}_p{p:g}_q{q:g}"
    if seed is not None:
        label += f"_seed{seed}"
    return label


def run_experiment(config: HarmPruningConfig, out: str | Path, model=None, progress: bool = True):
    """Run (or resume) ``config`` into ``out``; returns the ``PruningResult`` (also saved there).

    Args:
        config: the experiment.
        out: output directory; rerunning into the same directory skips finished steps.
        model: an already loaded model (default: load ``config.model``).
    """
    from tqdm.auto import tqdm

    from interp.io import atomic_write_json
    from interp.models import load_model, model_id
    from interp.provenance import Provenance, weights_hash
    from interp.pruning.apply import pruned
    from interp.pruning.masks import random_mask, set_difference, top_k_mask
    from interp.pruning.result import OverlapEntry, PruningPoint, PruningResult, point_from_mask
    from interp.pruning.weights import decoder_weights

    out = Path(out)
    _claim_directory(out, config)
    model = model if model is not None else load_model(config.model, device=config.device, dtype=config.dtype)
    weights = decoder_weights(model)
    evaluator = build_evaluator(config.evaluation)
    provenance = Provenance(model_id=model_id(model), weights_hash=weights_hash(model), extra={"experiment": config.name})

    # 1. scores (each saved as soon as it is computed)
    score_specs = {"harmful": config.harmful, "benign": config.benign, **{f"category_{name}": spec for name, spec in config.categories.items()}}
    scores = {name: _scores(model, name, spec, config, out, progress) for name, spec in score_specs.items()}

    # 2. masks for every point, then evaluate the points that are not finished
    plan: list[tuple[str, str, Any, dict[str, Any]]] = [("baseline", "baseline", None, {})]
    for p, q in itertools.product(config.p, config.q):
        mask = set_difference(scores["harmful"], scores["benign"], p=p, q=q)
        plan.append((point_label("set_difference", p, q), "set_difference", mask, {"p": p, "q": q, "category": "all"}))
        for seed in config.random_seeds:
            plan.append((point_label("random", p, q, seed), "random", random_mask(mask, seed=seed), {"p": p, "q": q, "seed": seed, "category": "all"}))
    category_masks = {
        name: set_difference(scores[f"category_{name}"], scores["benign"], p=config.overlap_p, q=config.overlap_q) for name in config.categories
    }
    top_masks = {name: top_k_mask(scores[f"category_{name}"], config.overlap_q, scope="matrix") for name in config.categories}
    if config.evaluate_categories:
        for name, mask in category_masks.items():
            plan.append((point_label("set_difference", config.overlap_p, config.overlap_q, category=name), "set_difference", mask,
                         {"p": config.overlap_p, "q": config.overlap_q, "category": name}))

    points_dir = out / "points"
    todo = [step for step in plan if not (points_dir / f"{step[0]}.json").exists()]
    bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc=f"{config.name}: settings", disable=not progress)
    for label, kind, mask, fields in todo:
        bar.set_postfix_str(label)
        if mask is None:
            evaluation = evaluator(model)
        else:
            with pruned(model, mask):
                evaluation = evaluator(model)
        point = point_from_mask(label, kind, mask, evaluation.metrics, samples=evaluation.samples, **fields)
        record = {"point": point.to_dict(), "pruned_counts": mask.counts() if mask is not None else {}}
        if config.save_masks and mask is not None:
            mask.save(out / "masks" / f"{label}.safetensors")
        atomic_write_json(points_dir / f"{label}.json", record)
        bar.update(1)
    bar.close()

    # 3. assemble the result from the finished points
    records = [json.loads((points_dir / f"{label}.json").read_text()) for label, _, _, _ in plan]
    names = list(category_masks)
    overlaps = tuple(
        OverlapEntry(a, b, masks[a].overlap(masks[b]), mask=kind)
        for kind, masks in (("set_difference", category_masks), ("top_k", top_masks))
        for a, b in itertools.combinations(names, 2)
    )
    result = PruningResult(
        points=tuple(PruningPoint.from_dict(record["point"]) for record in records),
        weight_sizes={weight.key: weight.numel for weight in weights},
        pruned_counts={record["point"]["label"]: record["pruned_counts"] for record in records if record["pruned_counts"]},
        overlaps=overlaps,
        method=config.method,
        provenance=provenance,
    )
    result.save(out)
    return result


def _claim_directory(out: Path, config: HarmPruningConfig) -> None:
    """Create ``out`` for this experiment, or check that it already holds this same experiment."""
    from interp.io import atomic_write_json

    stored = out / "config.json"
    wanted = config.to_dict()
    if stored.exists():
        found = json.loads(stored.read_text())
        if found != wanted:
            changed = sorted(key for key in set(found) | set(wanted) if found.get(key) != wanted.get(key))
            raise InterpError(
                f"{out} holds a different experiment (changed: {', '.join(changed)}). "
                "Use a new --out directory, or delete this one to start over."
            )
        return
    if out.exists() and any(out.iterdir()):
        raise InterpError(f"{out} exists and is not an experiment directory (no config.json); choose an empty or new --out.")
    atomic_write_json(stored, wanted)


def _scores(model, name: str, spec: DatasetSpec, config: HarmPruningConfig, out: Path, progress: bool):
    """Scores of ``name``: loaded from ``out/scores`` when a matching file exists, else computed and saved."""
    from interp.pruning.pairs import pairs_hash, response_pairs
    from interp.pruning.scores import ImportanceScores, importance_scores
    from interp.provenance import weights_hash

    records = spec.load()[: config.n_samples]
    path = out / "scores" / f"{name}.safetensors"
    if path.exists():
        saved = ImportanceScores.load(path)
        same = (
            saved.method == config.method
            and saved.provenance.dataset_hash == pairs_hash(response_pairs(records, source=spec.describe()))
            and saved.provenance.weights_hash == weights_hash(model)
        )
        if same:
            return saved
    try:
        scores = importance_scores(model, records, method=config.method, batch_size=config.batch_size, progress=progress)
    except InterpError as error:
        raise InterpError(f"[{name}] ({spec.describe()}): {error}") from error
    scores.save(path)
    return ImportanceScores.load(path)


# ---- command line ---------------------------------------------------------------------------------


def add_cli(subparsers) -> None:
    """Register ``interp run``."""
    from interp.cli import add_subcommand

    parser = add_subcommand(
        subparsers,
        "run",
        _run,
        help="Run (or resume) a scripted experiment described in a TOML file.",
        example="interp run circuits/harm_pruning.toml --out runs/harm_pruning",
    )
    parser.epilog = f"{parser.epilog}\n\nTOML keys:\n{config_doc()}"
    parser.add_argument("config", type=Path, help="experiment file (TOML), e.g. circuits/harm_pruning.toml")
    parser.add_argument("--out", required=True, type=Path, help="output directory; rerun with the same --out to resume")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    result = run_experiment(config, args.out, progress=not args.quiet)
    print(summary(result))
    print(f"results in {args.out} (result.json, points.csv, harm_utility.html)")
    return 0


def summary(result) -> str:
    """A plain-text table of every point's main metrics, with changes from the baseline."""
    harm = result.pick_metric(("harm_judge_rate", "harm_keyword_rate"))
    utility = [name for name in ("task_accuracy", "benign_judge_rate", "benign_loss") if name in result.metric_names]
    baseline = result.baseline
    header = f"{'setting':<44} {'% pruned':>9} {harm:>18}" + "".join(f" {name:>18}" for name in utility)
    lines = [header, "-" * len(header)]
    for point in result.points:
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
    for entry in result.overlaps:
        o = entry.overlap
        lines.append(
            f"overlap ({entry.mask.replace('_', ' ')}) {entry.a} & {entry.b}: {o.n_both} shared of {o.n_a} / {o.n_b} (chance {o.chance_n_both:.1f}; "
            f"{o.enrichment:.1f}x chance; Jaccard {o.jaccard:.3f} vs {o.chance_jaccard:.4f})"
        )
    return "\n".join(lines)
