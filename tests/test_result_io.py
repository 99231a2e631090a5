"""One layout for every saved result (``interp.io.write_result`` / ``read_result``): the tag scheme,
results saved by earlier interps (old tags, no tags, flat provenance), and the errors for a missing
result, a result of another kind, and a newer or unconvertible format version."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from interp import provenance as provenance_module
from interp.dictionaries.attribution import FeatureAttribution
from interp.dictionaries.direct import FeatureLogitAttribution
from interp.dictionaries.evaluate import DictionaryEval
from interp.dictionaries.log import TrainingLog
from interp.dictionaries.patching import FeaturePatching
from interp.directions import DirectionResult, RefusalDirection
from interp.errors import InterpError
from interp.graphs import Graph, GraphIntervention
from interp.io import RESULT_FORMATS, read_result
from interp.lens import LensResult
from interp.lens import LensKL, TrainingRecord, TunedLens
from interp.mechanisms.attention import AttentionPattern
from interp.mechanisms.dla import DLAResult
from interp.mechanisms.induction import InductionResult
from interp.mechanisms.norms import SiteNorms
from interp.patching import PatchingResult
from interp.probes import ProbeEval, ProbeResult, train_probes
from interp.probes.synthetic import synthetic_activations
from interp.provenance import Provenance, library_versions
from interp.pruning import ImportanceScores, PruningMask, PruningPoint, PruningResult
from interp.pruning.recognition import RecognitionResult
from interp.resampling import ResamplingResult, ResilienceResult

REPOSITORY = next(parent for parent in Path(__file__).resolve().parents if (parent / "pyproject.toml").is_file())
PROVENANCE = Provenance(model_id="tiny", weights_hash="abc123", dataset_hash="d0", hooks=("blocks.0.hook_resid_post",), seed=1, extra={"k": "v"})


# --------------------------------------------------------------------------- small results, built by hand


def _lens() -> LensResult:
    shape = (1, 2, 1)  # site, prompt, pos
    return LensResult(
        sites=("blocks.0.hook_resid_post",), prompts=("a b", "c"), positions=torch.tensor([[1], [0]]),
        position_tokens=((" b",), ("c",)), valid=torch.ones(2, 1, dtype=torch.bool), target_ids=torch.tensor([3, 4]),
        target_tokens=(" x", " y"), target_prob=torch.full(shape, 0.5), target_logprob=torch.full(shape, -0.69),
        target_rank=torch.zeros(shape), kl_to_final=torch.zeros(shape), top_ids=torch.tensor([[[[3, 1]], [[4, 2]]]]),
        top_probs=torch.tensor([[[[0.5, 0.2]], [[0.5, 0.1]]]]), top_tokens=(((((" x", " q"),), ((" y", " r"),)),)),
        provenance=PROVENANCE,
    )  # fmt: skip


def _patching() -> PatchingResult:
    return PatchingResult(
        values=torch.tensor([[0.1, 0.2], [0.3, 0.4]]), axes=("layer", "pos"), labels={"layer": ("0", "1"), "pos": ("0:a", "1:b→c")},
        site="resid_pre", hook_names=("blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"), method="activation", direction="denoising",
        metric_name="logit_diff", clean_metric=1.0, corrupt_metric=0.0, clean_tokens=("a", "b"), corrupt_tokens=("a", "c"),
        n_prompts=1, provenance=PROVENANCE, fast_path=True,
    )  # fmt: skip


def _pruning() -> PruningResult:
    points = (
        PruningPoint("baseline", "baseline", 0.0, 0, {"harm_judge_rate": 0.9, "task_accuracy": 0.8}),
        PruningPoint("set_difference_p0.01_q0.01", "set_difference", 0.01, 2, {"harm_judge_rate": 0.3, "task_accuracy": 0.78}, p=0.01, q=0.01, category="all"),
    )  # fmt: skip
    return PruningResult(points, {"blocks.0.attn.q": 100, "blocks.0.mlp.out": 100}, {"set_difference_p0.01_q0.01": {"blocks.0.attn.q": 2}}, method="snip", provenance=PROVENANCE)


def _scores() -> ImportanceScores:
    return ImportanceScores({"blocks.0.attn.q": torch.arange(6.0).reshape(2, 3)}, "snip", PROVENANCE, n_samples=2, n_tokens=7)


def _mask() -> PruningMask:
    return PruningMask({"blocks.0.attn.q": torch.tensor([[True, False, False], [False, False, True]])}, "two weights")


@pytest.fixture(scope="module")
def probe() -> ProbeResult:
    acts, labels = synthetic_activations(n_layers=2, n_prompts=40, d_model=6, separation=[3.0, 3.0], seed=0)
    return train_probes(acts, labels, cv=3, holdout=0.2, seed=0, progress=False)


def _probe_eval() -> ProbeEval:
    metric = torch.tensor([0.5, 0.75])
    return ProbeEval(hooks=("blocks.0.hook_resid_post", "blocks.1.hook_resid_post"), label_names=("0", "1"), accuracy=metric,
                     auroc=metric, log_loss=metric, n_prompts=10, n_positive=5, provenance=PROVENANCE)  # fmt: skip


def _resampling() -> ResamplingResult:
    metrics = {"accuracy": np.array([0.5, np.nan]), "counterfactual_importance_accuracy": np.array([0.25, -0.5])}
    return ResamplingResult(("One.", "Two."), metrics, np.array([[0.0, 0.3], [0.0, 0.0]]), PROVENANCE)


def _dla() -> DLAResult:
    return DLAResult(
        prompts=("a b",), positions=torch.tensor([[1]]), position_tokens=((" b",),), answer_ids=torch.tensor([3]), answer_tokens=(" x",),
        wrong_ids=torch.tensor([4]), wrong_tokens=(" y",), components=("embed", "L0 attn", "L0 mlp", "bias"),
        component_values=torch.tensor([[[0.1, 0.5, -0.2, 0.0]]]), head_values=torch.tensor([[[[0.3, 0.2]]]]), head_bias=torch.zeros(1, 1, 1),
        logit_diff=torch.tensor([[0.4]]), provenance=PROVENANCE,
    )  # fmt: skip


def _induction() -> InductionResult:
    half = torch.tensor([[3, 4]])
    return InductionResult(scores=torch.tensor([[0.1, 0.9]]), tokens=torch.cat([torch.tensor([[1]]), half, half], 1), first_loss=torch.full((1, 2), 8.0),
                           repeat_loss=torch.full((1, 2), 2.0), ablations=(((0, 1),), ((0, 0),)), ablated_repeat_loss=torch.tensor([[[6.0, 5.0]], [[2.5, 2.0]]]),
                           provenance=PROVENANCE)  # fmt: skip


def _directions() -> DirectionResult:
    scores = torch.tensor([[0.5, -1.0], [float("nan"), 0.25]])
    return DirectionResult(directions=torch.arange(12.0).reshape(2, 2, 3), positions=(-2, -1), position_labels=("<|im_end|>", "\\n"),
                           ablation_score=scores, addition_score=-scores, kl=scores.abs(), baseline_harmful=-2.5, baseline_benign=-4.0,
                           refusal_tokens=("I",), chosen_position=1, chosen_layer=0, selection="ablation", max_kl=0.1, max_layer=1,
                           counts={"harmful": 2, "benign": 2}, provenance=PROVENANCE)  # fmt: skip


def _refusal_direction() -> RefusalDirection:
    return RefusalDirection(vector=torch.tensor([0.5, -1.0, 2.0]), layer=1, position=-1, position_label="\\n", provenance=PROVENANCE)


def _attention_pattern() -> AttentionPattern:
    return AttentionPattern(prompt="a b", tokens=("a", " b"), layer=0, head=1, pattern=torch.tensor([[1.0, 0.0], [0.25, 0.75]]), provenance=PROVENANCE)


def _tuned_lens() -> TunedLens:
    record = TrainingRecord(init="least_squares", steps=2, lr=1e-4, batch_tokens=4, ridge=1e-3, seed=0, n_texts=1, n_tokens=5, seconds=0.1,
                            loss=(0.5, 0.25), site_loss=((0.5,), (0.25,)))  # fmt: skip
    weight, bias = torch.zeros(2, 3, 3), torch.zeros(2, 3)
    weight[0, 0, 1], bias[0, 2] = 0.5, -1.0
    return TunedLens(("blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"), weight, bias, PROVENANCE, record)


def _lens_kl() -> LensKL:
    kl = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    return LensKL(("logit lens", "tuned lens"), ("blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"), kl, kl / 10, n_texts=1, n_tokens=5, provenance=PROVENANCE)


def _recognition(probe: ProbeResult) -> RecognitionResult:
    auroc = torch.tensor([0.5, 0.75])
    return RecognitionResult(probe=probe, masks=("mask", "random"), mask_descriptions=("set difference", "random control"), mask_counts=(4, 4),
                             mask_fractions=(0.01, 0.01), unpruned_auroc=auroc, frozen_auroc=torch.stack([auroc / 2, auroc]),
                             retrained_auroc=torch.stack([auroc, auroc]), provenance=PROVENANCE)  # fmt: skip


# kind -> (save into a directory, load it back, what must survive the round trip); the probe uses its fixture
def _resilience() -> ResilienceResult:
    steps = ({"iteration": 0, "replacement": "Try again.", "reappeared": True, "sentence": "So 42."},
             {"iteration": 1, "replacement": "Base case.", "reappeared": False, "sentence": None})  # fmt: skip
    return ResilienceResult("It is 42.", 1, True, steps, provenance=PROVENANCE)


def _site_norms() -> SiteNorms:
    return SiteNorms("resid_post", (0, 1), ("a", "b"), np.array([[1.0, 2.0], [3.0, np.nan]]), "last", "m", provenance=PROVENANCE)


def _training_log() -> TrainingLog:
    curve = np.array([0.9, 0.5, 0.3])
    return TrainingLog(np.array([1, 2, 3]), curve, curve / 10, np.array([4.0, 4.0, 4.0]), np.array([0.0, 0.0, 0.1]),
                       tokens=3072, site="blocks.1.hook_resid_post", output_site="", d_sae=64, settings="{}",
                       provenance=PROVENANCE)  # fmt: skip


def _dictionary_eval() -> DictionaryEval:
    ids = torch.tensor([[3, 4], [4, 5], [5, 3]])
    return DictionaryEval(site="blocks.1.hook_resid_post", output_site="", n_tokens=10, fvu=0.2, l0=2.0, dead_fraction=0.0,
                          dense_fraction=0.0, ce_clean=2.0, ce_spliced=2.5, ce_zero_ablated=6.0, kl_spliced=0.1,
                          frequency=torch.tensor([0.5, 0.2, 0.0]), max_activation=torch.tensor([1.0, 0.5, 0.0]),
                          top_prompt=torch.tensor([[0, 1], [1, -1], [-1, -1]]), top_position=torch.tensor([[1, 2], [1, -1], [-1, -1]]),
                          top_activation=torch.tensor([[1.0, 0.7], [0.5, 0.0], [0.0, 0.0]]), promoted_ids=ids,
                          promoted_values=torch.ones(3, 2), suppressed_ids=ids, suppressed_values=-torch.ones(3, 2),
                          prompt_tokens=(("a", " b", " c"), ("d", " e", " f")), vocabulary=(" x", " y", " z"),
                          vocabulary_ids=torch.tensor([3, 4, 5]), provenance=PROVENANCE)  # fmt: skip


def _feature_attribution() -> FeatureAttribution:
    return FeatureAttribution(values=torch.tensor([[0.1, -0.2, 0.0], [0.3, 0.0, 0.05]]), error=torch.tensor([0.01, -0.02]),
                              positions=("0:a", "1:b→c"), site="blocks.1.hook_resid_post", direction="denoising",
                              metric_name="logit_diff", clean_metric=1.0, corrupt_metric=-1.0, n_prompts=2,
                              provenance=PROVENANCE)  # fmt: skip


def _feature_patching() -> FeaturePatching:
    return FeaturePatching(values=torch.tensor([[0.1, -0.2, 0.0], [0.3, 0.0, 0.05]]), error=torch.tensor([0.01, -0.02]),
                           together=torch.tensor([0.12, 0.3]), attribution=torch.tensor([[0.1, -0.1, 0.0], [0.2, 0.0, 0.1]]),
                           features=(4, 0, 7), positions=("0:a", "1:b→c"), site="blocks.1.hook_resid_post",
                           direction="denoising", metric_name="logit_diff", clean_metric=1.0, corrupt_metric=-1.0,
                           n_prompts=2, provenance=PROVENANCE)  # fmt: skip


def _feature_dla() -> FeatureLogitAttribution:
    grid = torch.tensor([[0.5, -0.1]])
    return FeatureLogitAttribution(prompts=("a b", "c d"), positions=(1,), position_tokens=((" b",), (" d",)),
                                   answer_ids=torch.tensor([3, 3]), answer_tokens=(" x", " x"), wrong_ids=torch.tensor([4, 5]),
                                   wrong_tokens=(" y", " z"), values=torch.tensor([[[0.2, 0.0, -0.3]], [[0.0, 0.1, 0.0]]]),
                                   decoder_bias=grid.T, skip=-grid.T, error=grid.T / 2, readout_bias=grid.T / 4,
                                   logit_diff=grid.T * 3, site="blocks.1.hook_mlp_out", provenance=PROVENANCE)  # fmt: skip


def _attribution_graph() -> Graph:
    adjacency = torch.zeros(9, 9)  # 1 feature, 2 layers x 2 positions of errors, 2 tokens, 2 logits
    adjacency[0, 5:7] = torch.tensor([0.5, -0.25])
    adjacency[7:9, :5] = torch.tensor([[0.3, 0.1, 0.0, -0.2, 0.05], [-0.1, 0.0, 0.2, 0.0, 0.1]])
    return Graph(prompt="a b", tokens=torch.tensor([3, 4]), token_strings=("a", " b"), n_layers=2,
                 active_features=torch.tensor([[0, 1, 7]]), activations=torch.tensor([1.5]), logit_tokens=torch.tensor([5, 6]),
                 logit_strings=(" x", " y"), logit_probabilities=torch.tensor([0.6, 0.3]), adjacency=adjacency,
                 n_active_features=3, feature_order="logit influence", provenance=PROVENANCE)  # fmt: skip


def _graph_intervention() -> GraphIntervention:
    return GraphIntervention(set_names=("say sure", "random"), features=torch.tensor([[0, 1, 2, 7], [0, 0, 2, 3], [1, 1, 0, 5]]),
                             values=torch.tensor([0.0, 0.0, 1.5]), scale=None, prompts=("a b c", "d e"),
                             target_name="logit_diff", before=torch.tensor([2.0, 1.0]),
                             after=torch.tensor([[0.5, 0.2], [1.9, 1.1]]), provenance=PROVENANCE)  # fmt: skip


def _saved(kind: str, directory: Path, probe: ProbeResult):
    result = {"lens": _lens, "patching": _patching, "pruning": _pruning, "importance_scores": _scores, "pruning_mask": _mask,
              "probe": lambda: probe, "probe_eval": _probe_eval, "resampling": _resampling,
              "dla": _dla, "attention_pattern": _attention_pattern, "induction": _induction,
              "tuned_lens": _tuned_lens, "lens_kl": _lens_kl, "directions": _directions, "refusal_direction": _refusal_direction,
              "recognition": lambda: _recognition(probe), "resilience": _resilience,
              "site_norms": _site_norms, "dictionary_training": _training_log,
              "dictionary_eval": _dictionary_eval, "feature_attribution": _feature_attribution,
              "feature_patching": _feature_patching, "feature_dla": _feature_dla,
              "attribution_graph": _attribution_graph, "graph_intervention": _graph_intervention}[kind]()  # fmt: skip
    if kind == "refusal_direction":  # one file
        directory.mkdir(parents=True)
        return result, result.save(directory / RESULT_FORMATS[kind].tensors_file)
    return result, result.save(directory)


LOADERS = {
    "lens": LensResult.load, "patching": PatchingResult.load, "pruning": PruningResult.load, "importance_scores": ImportanceScores.load,
    "pruning_mask": PruningMask.load, "probe": ProbeResult.load, "probe_eval": ProbeEval.load, "resampling": ResamplingResult.load,
    "dla": DLAResult.load, "attention_pattern": AttentionPattern.load, "induction": InductionResult.load,
    "tuned_lens": TunedLens.load, "lens_kl": LensKL.load, "directions": DirectionResult.load, "refusal_direction": RefusalDirection.load,
    "recognition": RecognitionResult.load, "resilience": ResilienceResult.load, "site_norms": SiteNorms.load,
    "dictionary_training": TrainingLog.load, "dictionary_eval": DictionaryEval.load,
    "feature_attribution": FeatureAttribution.load, "feature_patching": FeaturePatching.load,
    "feature_dla": FeatureLogitAttribution.load,
    "attribution_graph": Graph.load, "graph_intervention": GraphIntervention.load,
}  # fmt: skip
DIRECTORY_KINDS = [kind for kind, fmt in RESULT_FORMATS.items() if fmt.meta_file]


def _rewrite_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _rewrite_metadata(path: Path, change) -> None:
    """Rewrite the string metadata of a safetensors file (as an older interp would have written it)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata, tensors = dict(handle.metadata() or {}), {key: handle.get_tensor(key) for key in handle.keys()}
    change(metadata)
    save_file(tensors, str(path), metadata=metadata or None)


# --------------------------------------------------------------------------- the tag scheme


@pytest.mark.parametrize("kind", sorted(RESULT_FORMATS))
def test_every_result_is_tagged_with_its_kind_and_version_and_round_trips(kind, tmp_path, probe):
    fmt = RESULT_FORMATS[kind]
    result, written = _saved(kind, tmp_path / kind, probe)
    if fmt.meta_file:
        meta = json.loads((written / fmt.meta_file).read_text())
        assert (meta["format"], meta["format_version"]) == (f"interp.{kind}", fmt.version)
        assert meta["provenance"] == (result.provenance.to_dict() if result.provenance else None)
    if fmt.tensors_file:
        with safe_open(str(written / fmt.tensors_file if written.is_dir() else written), framework="pt") as handle:
            metadata = handle.metadata()
        assert (metadata["format"], metadata["format_version"]) == (f"interp.{kind}", str(fmt.version))
    saved = read_result(written, fmt)
    assert saved.version == fmt.version
    loaded = LOADERS[kind](written)
    assert getattr(loaded, "provenance", None) == getattr(result, "provenance", None)
    for html in Path(written if written.is_dir() else written.parent).glob("*.html"):  # plotly.js inlined: opens offline
        text = html.read_text()
        assert '<script src="https://cdn.plot.ly' not in text and "* plotly.js v" in text, html.name


def test_pruning_figures_no_longer_load_plotly_from_a_cdn(tmp_path):
    directory = _pruning().save(tmp_path / "p")
    pages = sorted(p.name for p in directory.glob("*.html"))
    assert pages == ["distribution.html", "harm_utility.html"]
    for name in pages:
        text = (directory / name).read_text()
        assert '<script src="https://cdn.plot.ly' not in text and "* plotly.js v" in text, name


# --------------------------------------------------------------------------- results saved by earlier interps


def test_old_lens_result_without_a_tag_loads(tmp_path):
    result = _lens()
    directory = result.save(tmp_path / "lens")

    def old(meta):
        del meta["format"], meta["format_version"]
        meta["kind"] = "logit_lens"

    _rewrite_json(directory / "lens.json", old)
    _rewrite_metadata(directory / "lens.safetensors", lambda metadata: metadata.clear())
    loaded = LensResult.load(directory)
    assert loaded.top_tokens == result.top_tokens and torch.equal(loaded.target_prob, result.target_prob) and loaded.provenance == PROVENANCE


def test_old_patching_result_tag_loads(tmp_path):
    result = _patching()
    directory = result.save(tmp_path / "patch")
    _rewrite_json(directory / "result.json", lambda meta: meta.update(format="interp.patching_result", format_version=1))
    _rewrite_metadata(directory / "values.safetensors", lambda metadata: (metadata.pop("format_version"), metadata.update(format="interp.patching_result")))
    loaded = PatchingResult.load(directory)
    assert torch.equal(loaded.values, result.values) and loaded.labels == result.labels and loaded.provenance == PROVENANCE


@pytest.mark.parametrize("name", ["snip_sweep", "signed_snip_p0.01_q0.01"])
def test_the_committed_harm_pruning_results_load(name):
    directory = REPOSITORY / "circuits" / "harm_pruning" / name
    assert json.loads((directory / "result.json").read_text())["format"] == "interp-pruning-result"  # the old tag
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # made under other library versions
        result = PruningResult.load(directory)
    assert result.baseline is not None and result.provenance.model_id == "organism:default"
    assert read_result(directory, RESULT_FORMATS["pruning"]).version == 1


def test_old_pruning_result_written_by_hand_loads(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({
        "format": "interp-pruning-result", "method": "snip", "provenance": None, "weight_sizes": {"blocks.0.attn.q": 10}, "pruned_counts": {}, "overlaps": [],
        "points": [{"label": "baseline", "kind": "baseline", "fraction": 0.0, "n_pruned": 0, "metrics": {"harm_judge_rate": 1.0}}],
    }))  # fmt: skip
    result = PruningResult.load(tmp_path)
    assert result.baseline.metrics == {"harm_judge_rate": 1.0} and result.provenance is None


def test_old_importance_scores_with_flat_provenance_load(tmp_path):
    path = tmp_path / "harm.safetensors"
    metadata = {"format": "interp-importance-scores", "method": "signed_snip", "n_samples": "3", "n_tokens": "11", "model_id": "tiny",
                "weights_hash": "abc123", "dataset_hash": "d0", "interp_version": "0.0.9", "versions": json.dumps(library_versions())}  # fmt: skip
    save_file({"blocks.0.mlp.out": torch.ones(2, 2)}, str(path), metadata=metadata)
    scores = ImportanceScores.load(path)
    assert (scores.method, scores.n_samples, scores.n_tokens) == ("signed_snip", 3, 11)
    assert (scores.provenance.model_id, scores.provenance.weights_hash, scores.provenance.dataset_hash) == ("tiny", "abc123", "d0")
    assert scores.provenance.interp_version == "0.0.9" and torch.equal(scores["blocks.0.mlp.out"], torch.ones(2, 2))
    assert read_result(path, RESULT_FORMATS["importance_scores"]).version == 1


def test_old_pruning_mask_loads(tmp_path):
    path = tmp_path / "mask.safetensors"
    save_file(dict(_mask().masks), str(path), metadata={"format": "interp-pruning-mask", "description": "old"})
    mask = PruningMask.load(tmp_path)
    assert mask.description == "old" and mask.n_pruned == 2


def test_old_probe_tag_loads(tmp_path, probe):
    directory = probe.save(tmp_path / "probe")
    _rewrite_json(directory / "probe.json", lambda meta: (meta.pop("format_version"), meta.update(format="interp.probe/1")))
    _rewrite_metadata(directory / "probe.safetensors", lambda metadata: (metadata.pop("format_version"), metadata.update(format="interp.probe/1")))
    loaded = ProbeResult.load(directory)
    assert loaded.hooks == probe.hooks and torch.equal(loaded.coef, probe.coef) and loaded.provenance == probe.provenance


def test_old_probe_eval_without_a_tag_loads(tmp_path):
    evaluation = _probe_eval()
    (tmp_path / "probe_eval.json").write_text(json.dumps(evaluation.to_dict()))  # what ProbeEval.save wrote before
    loaded = ProbeEval.load(tmp_path)
    assert loaded.hooks == evaluation.hooks and torch.equal(loaded.auroc, evaluation.auroc) and loaded.provenance == PROVENANCE


def test_old_resampling_result_with_a_plain_provenance_dict_loads(tmp_path):
    versions = library_versions()
    old = {
        "sentences": ["One.", "Two."],
        "metrics": {"accuracy": [0.5, None]},
        "importance_matrix": [[0.0, 0.3], [0.0, 0.0]],
        "provenance": {
            "model": "tiny-llama", "backend": {"backend": "local", "model": "tiny-llama", "weights_hash": "w1", "max_context": 64},
            "config": {"n": 2, "seed": 7}, "gt_answer": "42", "run_dir": "runs/r", "embedder": "one-hot", "similarity_threshold": 0.8,
            "n_no_answer": 1, "interp_version": "0.1.0", "versions": versions, "workarounds": [], "problem_hash": "p0",
        },
    }  # fmt: skip
    (tmp_path / "result.json").write_text(json.dumps(old))  # untagged: version 1
    result = ResamplingResult.load(tmp_path)
    p = result.provenance
    assert isinstance(p, Provenance)
    assert (p.model_id, p.weights_hash, p.dataset_hash, p.seed) == ("tiny-llama", "w1", "p0", 7)
    assert p.extra["n_no_answer"] == 1 and p.extra["config"] == {"n": 2, "seed": 7} and p.extra["embedder"] == "one-hot"
    assert dict(p.versions) == versions and np.isnan(result.metrics["accuracy"][1])
    assert read_result(tmp_path, RESULT_FORMATS["resampling"]).version == 1
    assert ResamplingResult(("a",), {}, np.zeros((1, 1)), {"model": "m", "kl_alpha": 1.0}).provenance.extra == {"kl_alpha": 1.0}


def test_loading_a_result_made_under_other_versions_still_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance_module, "_WARNED_VERSION_DIFFERENCES", set())
    directory = _resampling().save(tmp_path / "r")
    _rewrite_json(directory / "result.json", lambda meta: meta["provenance"]["versions"].update(torch="0.0.1"))
    with pytest.warns(UserWarning, match=r"made under torch 0\.0\.1"):
        ResamplingResult.load(directory)


# --------------------------------------------------------------------------- errors


def test_a_result_of_another_kind_names_its_loader(tmp_path, probe):
    pruning = _pruning().save(tmp_path / "pruning")
    with pytest.raises(InterpError, match=r"result\.json is a pruning result \(format 'interp\.pruning'\), not a patching result; load it with PruningResult\.load"):
        PatchingResult.load(pruning)
    with pytest.raises(InterpError, match=r"is a pruning result .*, not a resampling result; load it with PruningResult\.load"):
        ResamplingResult.load(pruning)
    probe_dir = probe.save(tmp_path / "probe")
    with pytest.raises(InterpError, match=r"holds no saved logit-lens result \(no lens\.json\).*It holds a probe \(probe\.json\); load that with interp\.probes\.load"):
        LensResult.load(probe_dir)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "result.json").write_text(json.dumps({"sentences": ["a"], "metrics": {}, "importance_matrix": [[0.0]], "provenance": {}}))
    with pytest.raises(InterpError, match=r"is a resampling result .*not a pruning result; load it with ResamplingResult\.load"):
        PruningResult.load(tmp_path / "old")
    mask = _mask().save(tmp_path / "mask.safetensors")
    with pytest.raises(InterpError, match=r"is a pruning-mask file \(format 'interp\.pruning_mask'\), not a importance-scores file; load it with PruningMask\.load"):
        ImportanceScores.load(mask)
    with pytest.raises(InterpError, match=r"format 'interp\.nonsense', so it is not a patching result"):
        _rewrite_json(pruning / "result.json", lambda meta: meta.update(format="interp.nonsense"))
        PatchingResult.load(pruning)


@pytest.mark.parametrize("kind", sorted(RESULT_FORMATS))
def test_a_missing_result_says_what_creates_one(kind, tmp_path):
    fmt = RESULT_FORMATS[kind]
    with pytest.raises(InterpError, match=r"holds no saved") as error:
        LOADERS[kind](tmp_path / "nothing" if fmt.meta_file else tmp_path / "nothing.safetensors")
    assert fmt.create in str(error.value)


@pytest.mark.parametrize("kind", sorted(RESULT_FORMATS))
def test_a_result_from_a_newer_interp_asks_for_an_upgrade(kind, tmp_path, probe):
    fmt = RESULT_FORMATS[kind]
    _, written = _saved(kind, tmp_path / kind, probe)
    if fmt.meta_file:
        _rewrite_json(written / fmt.meta_file, lambda meta: meta.update(format_version=fmt.version + 1))
    else:
        _rewrite_metadata(written, lambda metadata: metadata.update(format_version=str(fmt.version + 1)))
    with pytest.raises(InterpError, match=rf"written by a newer interp \(interp\.{kind} format version {fmt.version + 1}; .* reads up to version {fmt.version}\); upgrade interp"):
        LOADERS[kind](written)


def test_an_older_version_without_a_conversion_says_how_to_convert(tmp_path):
    directory = _lens().save(tmp_path / "lens")
    _rewrite_json(directory / "lens.json", lambda meta: meta.update(format_version=0))
    with pytest.raises(InterpError, match=r"interp\.lens format version 0, older than this interp converts .* Convert it by loading it with the interp that wrote it"):
        LensResult.load(directory)


def test_an_incomplete_directory_is_refused(tmp_path):
    directory = _patching().save(tmp_path / "patch")
    (directory / "values.safetensors").unlink()
    with pytest.raises(InterpError, match=r"holds no saved patching result \(no values\.safetensors\)"):
        PatchingResult.load(directory)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "lens.json").write_text("{not json")
    with pytest.raises(InterpError, match=r"lens\.json is not valid JSON"):
        LensResult.load(tmp_path / "bad")
