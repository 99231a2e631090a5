"""Experiments described in TOML, of any analysis: ``interp run FILE.toml --out DIR``.

A file names its analysis (``analysis = "lens"``; without the key, ``"pruning"``) and sets its keys,
plus ``name``, ``model``, ``dtype``, ``device``. Each analysis' keys are a frozen config dataclass
whose field docs are ``interp run --help``; ``run_experiment`` hands it to the analysis, which writes
its result to DIR (``.save(DIR)``) and the config beside it (``DIR/config.json``). Rerun into DIR:
cache shards, pruning scores and points, and resampling rollouts resume (another config there is
refused); lens, patching, probes, directions and recognition are skipped when DIR holds their result of the same
config and data, and recomputed otherwise. A new analysis is one config class (``ANALYSIS``, ``run``) and one
entry in ``ANALYSES``. E.g. ``analysis = "lens"``, ``targets = " sure"``, ``[prompts] path = "p.jsonl"``.

>>> config = load_config("circuits/harm_pruning.toml", overrides=["q=[0.01]"])   # doctest: +SKIP
>>> result = run_experiment(config, "runs/harm_pruning")                          # doctest: +SKIP
"""

import collections.abc
import dataclasses
import difflib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from interp import defaults, registry
from interp.checks import check_numbers
from interp.errors import InterpError

DEFAULT_ANALYSIS = "pruning"  # what a file without `analysis = ...` runs (pruning files predate the key)
JUDGES = ("keyword", "organism-harm", "organism-helpful", "harm-compliance")  # the built-in judges ("keyword": the refusal-string rule only)
IMPORTS = "an import path 'module:function' is imported only with `interp run --allow-imports` (allow_imports=True): it runs that module's code"


def _doc(text: str, path: bool = False, **kwargs) -> Any:
    return field(metadata={"doc": text, "path": path}, **kwargs)


def _one_of(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InterpError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}.")


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: a file, or a function that returns a list of records (dicts)."""

    path: str | None = _doc("JSONL / JSON / CSV / TXT file; a relative path is relative to the TOML file", path=True, default=None)
    call: str | None = _doc(f"a registered data loader that returns a list of dicts ({', '.join(registry.builtin('data'))}); {IMPORTS}", default=None)
    kwargs: Mapping[str, Any] = _doc("keyword arguments for `call`", default_factory=dict)
    text_field: str = _doc("field holding the prompt", default="text")
    response_field: str = _doc("field holding the response (for scores and losses)", default="response")
    where: Mapping[str, Any] = _doc("keep only records whose fields equal these values (a list: any of them), e.g. { category = \"cyber\" }", default_factory=dict)
    offset: int = _doc("skip the first `offset` records (after `where`), e.g. to take a held-out block of the same file", default=0)
    limit: int | None = _doc("use only the first `limit` records (after `where` and `offset`)", default=None)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.call is None):
            raise InterpError("a data set needs exactly one of `path` (a file) or `call` (a registered data loader).")
        if self.limit is not None and self.limit < 1:
            raise InterpError(f"limit must be at least 1, got {self.limit}.")
        if self.offset < 0:
            raise InterpError(f"offset must be 0 or more, got {self.offset}.")

    def load(self) -> list[dict[str, Any]]:
        """The records, each with the prompt under ``"text"`` and the response under ``"response"``."""
        if self.path is not None:
            from interp.data import PromptSet

            records = [dict(record) for record in PromptSet.from_file(self.path, text_field=self.text_field).records]
        else:
            records = registry.resolve("data", self.call)(**dict(self.kwargs))
            if not isinstance(records, (list, tuple)) or not all(isinstance(r, Mapping) for r in records):
                raise InterpError(f"{self.call}(**{dict(self.kwargs)}) must return a list of dicts, got {type(records).__name__}.")
            records = [{**record, "text": record.get(self.text_field)} if self.text_field != "text" else dict(record) for record in records]
        if self.response_field != "response":
            records = [{**record, "response": record.get(self.response_field)} for record in records]
        if self.where:
            records = [record for record in records if all(record.get(key) in value if isinstance(value, (list, tuple)) else record.get(key) == value for key, value in self.where.items())]
            if not records:
                raise InterpError(f"no record of {self.describe()} has {dict(self.where)}; check the `where` table.")
        if self.offset and self.offset >= len(records):
            raise InterpError(f"{self.describe()} has {len(records)} records, so offset = {self.offset} leaves none; use a smaller offset.")
        records = records[self.offset :]
        return records[: self.limit] if self.limit else records

    def prompts(self, model=None, chat_template: bool = False):
        """The records as a ``PromptSet`` (each a user turn of the tokenizer's chat template when asked)."""
        from interp.data import PromptSet

        prompts = PromptSet.from_records(self.load(), source=self.describe())
        return prompts.apply_chat_template(model.tokenizer) if chat_template else prompts

    def describe(self) -> str:
        return self.path or f"{self.call}({', '.join(f'{k}={v!r}' for k, v in dict(self.kwargs).items())})"


def _inputs_hash(*sources: "DatasetSpec | str | None") -> str:
    """A hash of the records of each data set and of the manifest of each store directory."""
    from interp.provenance import hash_json

    manifests = [Path(source, "manifest.json") for source in sources if isinstance(source, str)]
    records = [source.load() for source in sources if source is not None and not isinstance(source, str)]  # data-set tables
    return hash_json([records, [path.read_text(encoding="utf-8") if path.exists() else str(path) for path in manifests]])[:16]


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """The keys of every analysis: its name and the model it runs on."""

    ANALYSIS: ClassVar[str] = ""
    name: str = _doc("experiment name, shown in figures and logs", default="experiment")
    model: str = _doc("'organism', a registered name, a local Hugging Face directory (one starting with ./ or ../ is relative to the TOML file), or a hub id", default=defaults.MODEL)
    dtype: str = _doc("model dtype: float32, bfloat16 or float16 (pruning scores always accumulate in float32)", default="float32")
    device: str | None = _doc("cpu, cuda, ... (default: cuda if available)", default=None)

    def to_dict(self) -> dict[str, Any]:
        """What ``config.json`` records: the analysis and every key."""
        return {"analysis": self.ANALYSIS, **json.loads(json.dumps(dataclasses.asdict(self), default=list))}

    def load_model(self, model=None):
        from interp.model import load_model

        return model if model is not None else load_model(self.model, device=self.device, dtype=self.dtype)

    def run(self, out: Path, model=None, progress: bool = True) -> Any:  # the analysis: writes its result and config.json to `out`
        raise NotImplementedError

    def _once(self, out: Path, sources: tuple, load: Callable, compute: Callable, write: Callable | None = None) -> Any:
        """The result in ``out`` if it is of this config and data; else ``compute()``, written, then ``config.json``."""
        from interp.io import saved_result, write_record

        record = {**self.to_dict(), "inputs_hash": _inputs_hash(*sources)}
        result = saved_result(out, record, load)
        if result is None:
            result = compute()
            (write or (lambda found, directory: found.save(directory)))(result, out)
            write_record(out, record)
        return result


@dataclass(frozen=True, kw_only=True)
class CacheConfig(Experiment):
    """Cache activations of a prompt set to a store in OUT/store (resumes its finished shards)."""

    ANALYSIS: ClassVar[str] = "cache"
    name: str = _doc("experiment name, shown in figures and logs", default="cache")
    prompts: DatasetSpec = _doc("the prompts")
    hooks: tuple[str, ...] = _doc("hook names or shorthands: resid_pre, resid_post, attn_out, mlp_out, z, pattern, embed, ...", default=("resid_post",))
    positions: str | tuple[int, ...] = _doc("'last', 'all', or positions like [0, -1] (negative counts from each prompt's end)", default="last")
    batch_size: int = _doc("prompts per forward pass", default=defaults.CACHE_BATCH_SIZE)
    shard_size: int | None = _doc("prompts per shard file (default: 8 batches)", default=None)
    store_dtype: str | None = _doc("storage dtype: float32, bfloat16 or float16 (default: the model's)", default=None)
    chat_template: bool = _doc("wrap each prompt as a user turn with the tokenizer's chat template", default=False)

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.io import atomic_write_figure, claim_directory
        from interp.plots import activation_norms_figure
        from interp.store import cache_activations

        claim_directory(out, self.to_dict())
        model = self.load_model(model)
        store = cache_activations(model, self.prompts.prompts(model, self.chat_template), hooks=list(self.hooks), positions=self.positions if isinstance(self.positions, str) else list(self.positions),
                                  out=out / "store", batch_size=self.batch_size, dtype=self.store_dtype, shard_size=self.shard_size,
                                  resume=True, progress=progress)  # fmt: skip
        atomic_write_figure(out / "overview.html", activation_norms_figure(**dataclasses.asdict(store.norms())))
        return store


@dataclass(frozen=True, kw_only=True)
class LensConfig(Experiment):
    """Logit lens: decode the residual stream of every layer through the final norm and unembedding."""

    ANALYSIS: ClassVar[str] = "lens"
    name: str = _doc("experiment name, shown in figures and logs", default="lens")
    prompts: DatasetSpec | None = _doc("the prompts, run through the model (or give `store`)", default=None)
    store: str | None = _doc("an activation store directory to read instead of running the model", path=True, default=None)
    targets: str | tuple[str, ...] | None = _doc("the token to follow: one for every prompt, or one per prompt (default: the model's own prediction)", default=None)
    sites: tuple[str, ...] = _doc("residual sites: resid_pre, resid_mid, resid_post", default=defaults.LENS_SITES)
    positions: str | tuple[int, ...] = _doc("'last', 'all' or explicit positions (with prompts)", default=defaults.LENS_POSITIONS)
    top_k: int = _doc("top tokens kept per cell", default=defaults.LENS_TOP_K)
    metric: str = _doc(f"what lens.html shows: {', '.join(defaults.LENS_METRICS)}", default=defaults.LENS_METRIC)
    chat_template: bool = _doc("wrap each prompt as a user turn with the tokenizer's chat template", default=False)

    def __post_init__(self) -> None:
        if (self.prompts is None) == (self.store is None):
            raise InterpError("a lens experiment needs exactly one of a [prompts] table or `store` (an activation store directory).")
        _one_of("metric", self.metric, defaults.LENS_METRICS)

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.io import atomic_write_figure
        from interp.lens import LensResult, logit_lens

        def compute():
            options = dict(targets=list(self.targets) if isinstance(self.targets, tuple) else self.targets, sites=list(self.sites), top_k=self.top_k)
            if self.store is not None:
                from interp.store import ActivationStore

                return logit_lens(ActivationStore.open(self.store), **options)
            loaded = self.load_model(model)
            return logit_lens(loaded, self.prompts.prompts(loaded, self.chat_template), positions=self.positions if isinstance(self.positions, str) else list(self.positions), **options)

        def write(result, directory: Path) -> None:
            result.save(directory)
            atomic_write_figure(directory / "lens.html", result.figure(metric=self.metric))

        return self._once(out, (self.prompts, self.store), LensResult.load, compute, write)


@dataclass(frozen=True, kw_only=True)
class PatchingConfig(Experiment):
    """Activation or attribution patching of one site: which layer, position and head carry a behaviour."""

    ANALYSIS: ClassVar[str] = "patching"
    name: str = _doc("experiment name, shown in figures and logs", default="patching")
    clean: DatasetSpec = _doc("the clean prompts")
    corrupt: DatasetSpec = _doc("the corrupt prompts: same order and token length as the clean ones")
    metric: str = _doc("logit_diff (needs answer and wrong), probability (needs answer) or kl (to the clean run's next-token distribution)", default="logit_diff")
    answer: str | None = _doc("the answer token, e.g. ' mary' (or answer_field)", default=None)
    wrong: str | None = _doc("the wrong-answer token of logit_diff, e.g. ' john' (or wrong_field)", default=None)
    answer_field: str | None = _doc("read each prompt's answer token from this field of the clean records", default=None)
    wrong_field: str | None = _doc("read each prompt's wrong token from this field of the clean records", default=None)
    site: str = _doc("resid_pre, resid_mid, resid_post, attn_out, mlp_out, attn_head_out, attn_head_value, attn_head_pattern, ...", default=defaults.PATCH_SITE)
    method: str = _doc("activation (exact) or attribution (the gradient estimate)", default="activation")
    by_position: bool = _doc("one cell per position; false: each cell patches every position", default=True)
    direction: str = _doc("denoising: clean into the corrupt run; noising: corrupt into the clean run", default=defaults.PATCH_DIRECTION)
    normalize: bool = _doc("report (value - corrupt) / (clean - corrupt): 0 = the corrupt run, 1 = the clean run", default=False)
    batch_size: int | None = _doc("most rows (cells x prompts) per forward (default: from a memory budget)", default=None)
    chat_template: bool = _doc("wrap each prompt as a user turn with the tokenizer's chat template", default=False)

    def __post_init__(self) -> None:
        _one_of("metric", self.metric, ("logit_diff", "probability", "kl"))
        _one_of("method", self.method, ("activation", "attribution"))
        _one_of("direction", self.direction, defaults.PATCH_DIRECTIONS)
        if self.metric != "kl" and self.answer is None and self.answer_field is None:
            raise InterpError(f"metric {self.metric} needs `answer` (a token) or `answer_field`.")
        if self.metric == "logit_diff" and self.wrong is None and self.wrong_field is None:
            raise InterpError("metric logit_diff needs `wrong` (a token) or `wrong_field`.")

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.patching import PatchingResult

        return self._once(out, (self.clean, self.corrupt), PatchingResult.load, lambda: self._patch(model, progress))

    def _patch(self, model, progress: bool):
        import torch

        from interp import metrics
        from interp.patching import activation_patching, attribution_patching
        from interp.patching.inputs import model_device, pair_tokens

        model = self.load_model(model)
        clean = self.clean.prompts(model, self.chat_template)
        clean_tokens, corrupt_tokens = (tokens.to(model_device(model)) for tokens in pair_tokens(model, clean, self.corrupt.prompts(model, self.chat_template)))
        answer, wrong = ([str(v) for v in clean.field(name)] if name else value for value, name in ((self.answer, self.answer_field), (self.wrong, self.wrong_field)))
        with torch.no_grad():
            if self.metric == "kl":
                metric = metrics.kl_divergence(model(clean_tokens))
            else:
                metric = metrics.logit_diff(answer, wrong, model.tokenizer) if self.metric == "logit_diff" else metrics.probability(answer, model.tokenizer)
            if self.normalize:
                metric = metrics.normalized(metric, model(clean_tokens), model(corrupt_tokens))
        options = dict(site=self.site, by_position=self.by_position, direction=self.direction)
        if self.method == "attribution":
            return attribution_patching(model, clean_tokens, corrupt_tokens, metric, **options)
        return activation_patching(model, clean_tokens, corrupt_tokens, metric, batch_size=self.batch_size, progress=progress, **options)


@dataclass(frozen=True, kw_only=True)
class ProbesConfig(Experiment):
    """Linear probes on h_last of every layer of a store (cache the prompts first: analysis = "cache", positions "last")."""

    ANALYSIS: ClassVar[str] = "probes"
    name: str = _doc("experiment name, shown in figures and logs", default="probes")
    store: str = _doc("an activation store cached at the last position, e.g. the store/ of a cache experiment", path=True)
    label_field: str = _doc("the prompt record field holding the class label", default=defaults.LABEL_FIELD)
    layers: str | tuple[int | str, ...] = _doc("'all' (every cached resid_post, after the embeddings if cached), or layer numbers / hook names", default=defaults.PROBE_LAYERS)
    cv: int = _doc("stratified cross-validation folds", default=defaults.PROBE_CV)
    holdout: float = _doc("held-out fraction, stratified (0: none)", default=defaults.PROBE_HOLDOUT)
    C: float = _doc("inverse L2 strength, as scikit-learn's C", default=defaults.PROBE_C)
    seed: int = _doc("seed of the folds and the held-out split", default=defaults.PROBE_SEED)
    positive: str | None = _doc("the positive class (default: the later of two sorted labels; one-vs-rest with more)", default=None)
    max_iter: int = _doc("L-BFGS iterations at most", default=defaults.PROBE_MAX_ITER)

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.probes import ProbeResult, train_probes
        from interp.store import ActivationStore

        def compute():
            return train_probes(ActivationStore.open(self.store), self.label_field, layers=self.layers if isinstance(self.layers, str) else list(self.layers),
                                cv=self.cv, holdout=self.holdout, C=self.C, seed=self.seed, positive=self.positive, max_iter=self.max_iter,
                                progress=progress)  # fmt: skip

        return self._once(out, (self.store,), ProbeResult.load, compute)


@dataclass(frozen=True, kw_only=True)
class ResamplingConfig(Experiment):
    """Chain-of-thought resampling: rollouts from every sentence's prefix (OUT/rollouts, resumed), then each sentence's importance."""

    ANALYSIS: ClassVar[str] = "resampling"
    name: str = _doc("experiment name, shown in figures and logs", default="resampling")
    prompt: str = _doc("the text the chain of thought continues (e.g. ending in '<think>\\n')")
    solution: str | None = _doc("the base chain of thought (default: the model writes one, kept in OUT/rollouts/run.json)", default=None)
    gt_answer: str | int | None = _doc("the correct answer (without it, accuracy metrics are 0)", default=None)
    answer: str | None = _doc("regex with one group that extracts the answer (default: the first \\boxed{})", default=None)
    n: int = _doc("rollouts per prefix", default=defaults.RESAMPLE_N)
    temperature: float = _doc("sampling temperature", default=defaults.RESAMPLE_TEMPERATURE)
    top_p: float = _doc("nucleus sampling threshold", default=defaults.RESAMPLE_TOP_P)
    max_new_tokens: int = _doc("tokens per rollout", default=defaults.RESAMPLE_MAX_NEW_TOKENS)
    seed: int = _doc("base seed (each prefix derives its own)", default=defaults.RESAMPLE_SEED)
    batch_size: int | None = _doc("rollouts per generate call (default: all n of a prefix at once)", default=None)
    forced: bool = _doc("also sample answers forced right after each prefix", default=True)
    forced_max_new_tokens: int = _doc("tokens per forced-answer rollout", default=defaults.RESAMPLE_FORCED_MAX_NEW_TOKENS)
    backend: str = _doc("local (the model here) or vllm (large models, several GPUs)", default="local")
    tensor_parallel_size: int = _doc("GPUs of the vllm backend", default=defaults.VLLM_TENSOR_PARALLEL_SIZE)
    embedder: str = _doc(f"sentence-transformers model of the similarity filter, or a registered embedder f(texts) -> array; {IMPORTS}", default=defaults.EMBEDDER)
    similarity_threshold: float = _doc("cosine below which a resampled sentence counts as different", default=defaults.SIMILARITY_THRESHOLD)
    match_threshold: float = _doc("cosine at which a rollout sentence counts as a base sentence (matrix)", default=defaults.MATCH_THRESHOLD)
    matrix: bool = _doc("compute the sentence-to-sentence matrix (embeds every rollout sentence)", default=True)

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, ("local", "vllm"))

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.io import claim_directory
        from interp.resampling import Chain, LocalBackend, SamplingConfig, VLLMBackend, analyze, run_rollouts
        from interp.resampling.io import read_run_manifest

        claim_directory(out, self.to_dict())
        sampling = dict(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens, seed=self.seed)
        if self.backend == "vllm":
            backend = VLLMBackend(self.model, tensor_parallel_size=self.tensor_parallel_size, seed=self.seed)
        else:
            backend = LocalBackend(self.load_model(model))
        rollouts, solution = out / "rollouts", self.solution
        if solution is None and (rollouts / "run.json").exists():  # resuming: the chain the model wrote before
            solution = read_run_manifest(rollouts / "run.json")["solution"]
        if solution is None:
            solution = backend.generate(self.prompt, 1, **sampling)[0]
        config = SamplingConfig(n=self.n, batch_size=self.batch_size or self.n, forced=self.forced, forced_max_new_tokens=self.forced_max_new_tokens, **sampling)
        run = run_rollouts(backend, Chain.from_text(self.prompt, solution), rollouts, config=config, answer=self.answer,
                           gt_answer=None if self.gt_answer is None else str(self.gt_answer), progress=progress)  # fmt: skip
        embedder = registry.resolve("embedder", self.embedder) if registry.is_function("embedder", self.embedder) else self.embedder
        result = analyze(run, embedder, similarity_threshold=self.similarity_threshold,
                         match_threshold=self.match_threshold, matrix=self.matrix, progress=progress)  # fmt: skip
        result.save(out)
        return result


def resolve_judge(spec: str | None) -> Callable | None:
    """A judge ``f(record, response) -> bool`` from its registered name (None for 'keyword': the keyword rule only)."""
    return None if spec is None or spec == "keyword" else registry.resolve("judge", spec)


# analysis name -> its config class; a new analysis is one entry here (interp/experiments_pruning.py,
# interp/experiments_directions.py and interp/experiments_recognition.py add "pruning", "directions" and "recognition" themselves)
ANALYSES: dict[str, type[Experiment]] = {
    "cache": CacheConfig,
    "lens": LensConfig,
    "patching": PatchingConfig,
    "probes": ProbesConfig,
    "resampling": ResamplingConfig,
}


def run_experiment(config: Experiment, out: str | Path, model=None, progress: bool = True, allow_imports: bool = False) -> Any:
    """Run (or resume) ``config`` (of ``load_config`` or a class of ``ANALYSES``) into ``out``; returns its result, saved there.

    ``model``: an already loaded model (default: ``config.model`` is loaded when the analysis needs one).
    ``allow_imports``: let the config's judges, data loaders, extractors and embedders be import paths
    ``'module:function'`` (importing runs that module's code: only for files you trust); else only
    registered names (``interp.registry``) are called, and an import path is refused before anything runs.
    """
    if not isinstance(config, Experiment):
        raise InterpError(f"run_experiment needs an experiment config ({', '.join(cls.__name__ for cls in ANALYSES.values())}), got {type(config).__name__}.")
    with registry.imports_allowed(allow_imports):
        registry.check_config(config)
        return config.run(Path(out), model=model, progress=progress)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read and check a TOML experiment file; ``overrides``: ``KEY=VALUE`` with a TOML value (``evaluation.harmful.limit=8``)."""
    path = Path(path)
    if not path.is_file():
        raise InterpError(f"no experiment file at {path}{' (it is a directory)' if path.is_dir() else ''}; pass a TOML file.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InterpError(f"{path} is not valid TOML (UTF-8 text): {error}.") from error
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = [part.strip() for part in key.split(".")]
        if not sep or not all(parts):
            raise InterpError(f"--set {item!r}: use KEY=VALUE, e.g. --set n_samples=16 or --set evaluation.harmful.limit=8.")
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word is a string: --set model=organism
        table = data
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise InterpError(f"--set {item!r}: {part!r} is not a table in {path}.")
        table[parts[-1]] = value
    return parse_config(data, base=path.resolve().parent)


def parse_config(data: Mapping[str, Any], base: Path = Path(".")) -> Experiment:
    """The experiment config of parsed TOML (``base``: the directory relative paths start from)."""
    data = dict(data)
    analysis = data.pop("analysis", DEFAULT_ANALYSIS)
    if not isinstance(analysis, str) or analysis not in ANALYSES:
        raise InterpError(f"unknown analysis {analysis!r:.60} in the config.{_did_you_mean(str(analysis), ANALYSES)} Known analyses: {', '.join(ANALYSES)}.")
    config = _absolute_paths(_build(ANALYSES[analysis], data, "the config"), Path(base))
    if config.model.startswith(("./", "../")):  # a model directory written relative to the TOML file (a name or hub id never starts so)
        config = dataclasses.replace(config, model=str((Path(base) / config.model).resolve()))
    return config


def _did_you_mean(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise InterpError(f"{where} must be a table, got {type(data).__name__} {data!r}.")
    fields = {item.name: item for item in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise InterpError(f"unknown key {key!r} in {where}.{_did_you_mean(key, fields)} Known keys: {', '.join(fields)}.")
    values = {key: _value(fields[key].type, value, key, where) for key, value in data.items()}
    check_numbers(values, where=f" in {where}")
    for key, value in values.items():
        if fields[key].metadata.get("path") and isinstance(value, str) and "\x00" in value:
            raise InterpError(f"{key!r} in {where} is {value!r:.80}, which holds a NUL character no path can contain; give the file's path.")
    missing = [name for name, item in fields.items() if name not in values and item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING]
    if missing:
        raise InterpError(f"{where} is missing {', '.join(repr(name) for name in missing)}.")
    return cls(**values)


def type_options(kind: Any) -> list[Any]:
    """The types a field of type ``kind`` accepts (the arms of a union, None left out)."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    return [option for option in (typing.get_args(kind) if union else (kind,)) if option is not type(None)]


def table_type(kind: Any) -> type | None:
    """The dataclass of a ``Mapping[str, Dataclass]`` field (a table of tables), else None."""
    return typing.get_args(kind)[1] if typing.get_origin(kind) is collections.abc.Mapping and dataclasses.is_dataclass(typing.get_args(kind)[1]) else None


def _value(kind: Any, value: Any, key: str, where: str) -> Any:
    """``value`` checked against the field type ``kind`` (nested tables built), or a one-line error."""
    table = f"[{key}]" if where == "the config" else f"{where[:-1]}.{key}]"
    for option in type_options(kind):
        if dataclasses.is_dataclass(option):
            return _build(option, value, table)
        if table_type(option) is not None:
            if not isinstance(value, Mapping):
                raise InterpError(f"{key!r} in {where} must be a table of [{key}.NAME] tables, got {value!r}.")
            return {name: _build(table_type(option), spec, f"{table[:-1]}.{name}]") for name, spec in value.items()}
    converted = _convert(kind, value)
    if converted is _BAD:
        raise InterpError(f"{key!r} in {where} must be {_describe(kind)}, got {value!r}.")
    return converted


_BAD = object()
_NAMES = {str: ("a string", "strings"), int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans")}


def _convert(kind: Any, value: Any) -> Any:
    """``value`` as ``kind`` (a list as a tuple, an integer as a float, one value as a one-item tuple), or ``_BAD``."""
    options = type_options(kind)
    if len(options) > 1:
        return next((found for found in (_convert(option, value) for option in options) if found is not _BAD), _BAD)
    kind = options[0]
    if kind is Any:
        return value
    if kind in (bool, str):
        return value if isinstance(value, kind) else _BAD
    if kind in (int, float):
        return kind(value) if isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool) else _BAD
    if typing.get_origin(kind) is tuple:
        items = [_convert(typing.get_args(kind)[0], element) for element in (value if isinstance(value, (list, tuple)) else [value])]
        return _BAD if any(found is _BAD for found in items) else tuple(items)
    if typing.get_origin(kind) is collections.abc.Mapping:
        return dict(value) if isinstance(value, Mapping) else _BAD
    return _BAD


def _describe(kind: Any) -> str:
    words = []
    for option in type_options(kind):
        if typing.get_origin(option) is tuple:
            words.append("a list of " + " or ".join(_NAMES[item][1] for item in type_options(typing.get_args(option)[0])))
        else:
            words.append("a table" if typing.get_origin(option) is collections.abc.Mapping else _NAMES[option][0])
    return " or ".join(words)


def _absolute_paths(config: Any, base: Path) -> Any:
    """``config`` with every relative path (data-set files, store directories) made absolute from ``base``."""
    changes = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if item.metadata.get("path") and isinstance(value, str) and not Path(value).is_absolute():
            changes[item.name] = str((base / value).resolve())
        elif dataclasses.is_dataclass(value):
            changes[item.name] = _absolute_paths(value, base)
        elif isinstance(value, Mapping) and value and all(dataclasses.is_dataclass(v) for v in value.values()):
            changes[item.name] = {name: _absolute_paths(v, base) for name, v in value.items()}
    return dataclasses.replace(config, **changes) if changes else config


# analyses in their own modules: they build on Experiment above and register themselves in ANALYSES
import interp.experiments_directions  # noqa: E402, F401
import interp.experiments_recognition  # noqa: E402, F401
from interp.experiments_pruning import EvaluationConfig, HarmPruningConfig  # noqa: E402, F401
