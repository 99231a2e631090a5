"""Tests of interp.probes: batched probes against scikit-learn, splits, metrics, files, figures,
bad input, steering / ablation hooks on a tiny random Llama, and the CLI."""

import argparse
import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch

import interp.probes as probes
from interp.commands import probe as probe_cli
from interp.data import PromptSet
from interp.errors import InterpError
from interp.probes import ProbeResult, ablate, auroc, steer, stratified_folds, synthetic_activations, train_probes
from interp.probes import solver
from interp.provenance import Provenance
from interp.sites import site_name

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss as sk_log_loss  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

METRIC_TOL = 0.01  # "within 1 point" of scikit-learn, per fold and layer
COEF_TOL = 0.02  # relative to the largest coefficient; both solvers stop at max |grad| <= 1e-4

SEPARATION = [0.0, 0.5, 2.0, 4.0, 0.0]  # noise, weak, medium, strong, noise: the best layer is 3


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    acts, labels = synthetic_activations(n_layers=5, n_prompts=400, d_model=24, separation=SEPARATION, spectrum=1.5, seed=3)
    return acts, labels


@pytest.fixture(scope="module")
def planted_result(planted):
    acts, labels = planted
    return train_probes(acts, labels, cv=5, holdout=0.2, C=1.0, seed=0, progress=False)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny random Llama (2 layers, d_model 32): only this architecture, so the module builds one model."""
    from interp.testing import build_tiny_model

    return build_tiny_model("llama", tmp_path_factory.mktemp("probe_models") / "llama")


@pytest.fixture(scope="module")
def llama(llama_dir):
    from interp.model import load_model

    return load_model(llama_dir, device="cpu")


def sklearn_reference(acts, y, fold, C, cv):
    """Per-layer, per-fold metrics and final coefficients from StandardScaler + LogisticRegression."""
    out = {m: np.zeros((acts.shape[0], cv + 1)) for m in ("accuracy", "auroc", "log_loss")}
    coefs, intercepts = [], []
    for layer in range(acts.shape[0]):
        x = acts[layer].double().numpy()
        for f in list(range(cv)) + [-1]:
            train = (fold != f) & (fold != -1) if f >= 0 else fold != -1
            test = fold == f
            scaler = StandardScaler().fit(x[train])
            model = LogisticRegression(C=C, max_iter=10_000, tol=1e-8).fit(scaler.transform(x[train]), y[train])
            p = model.predict_proba(scaler.transform(x[test]))[:, 1]
            col = f if f >= 0 else cv
            out["accuracy"][layer, col] = ((p > 0.5) == y[test]).mean()
            out["auroc"][layer, col] = roc_auc_score(y[test], p)
            out["log_loss"][layer, col] = sk_log_loss(y[test], p)
        coefs.append(model.coef_[0])
        intercepts.append(model.intercept_[0])
    return out, np.array(coefs), np.array(intercepts)


def assert_matches_sklearn(result: ProbeResult, acts: torch.Tensor, C: float) -> None:
    y, fold = result.y.numpy(), result.fold.numpy()
    ref, coef, intercept = sklearn_reference(acts, y, fold, C, result.cv)
    splits = list(range(result.cv)) + [-1]
    n_test = np.array([(fold == f).sum() for f in splits])
    n_pairs = np.array([((fold == f) & (y == 1)).sum() * ((fold == f) & (y == 0)).sum() for f in splits])
    for metric in ("accuracy", "auroc", "log_loss"):
        ours = np.concatenate([getattr(result, f"cv_{metric}").numpy(), getattr(result, f"holdout_{metric}").numpy()[:, None]], 1)
        # per layer: the CV mean within 1 point
        layer_gap = np.abs(ours[:, :-1].mean(1) - ref[metric][:, :-1].mean(1))
        assert layer_gap.max() <= METRIC_TOL, (
            f"per-layer CV {metric} differs from scikit-learn by {layer_gap.max():.4f} at layer {layer_gap.argmax()}: "
            f"{layer_gap.round(4).tolist()}; tolerance {METRIC_TOL}"
        )
        # per fold and held-out: within 1 point, or one prompt (one pair for AUROC) flipping on a small split
        granularity = {"accuracy": 1.0 / n_test, "auroc": 1.0 / n_pairs, "log_loss": 0.0 * n_test}[metric]
        allowed = np.maximum(METRIC_TOL, granularity + 1e-6)
        gap = np.abs(ours - ref[metric])
        worst = np.unravel_index((gap - allowed).argmax(), gap.shape)
        assert (gap <= allowed).all(), (
            f"{metric} differs from scikit-learn by {gap[worst]:.4f} at layer {worst[0]}, fold {worst[1]} "
            f"(ours {ours[worst]:.4f}, sklearn {ref[metric][worst]:.4f})"
        )
    rel = np.abs(result.coef.numpy() - coef).max(1) / np.abs(coef).max(1)
    assert rel.max() <= COEF_TOL, f"final coefficients differ from scikit-learn by {rel.max():.4f} (relative) at layer {rel.argmax()}"
    assert np.allclose(result.intercept.numpy(), intercept, atol=0.05), (result.intercept, intercept)


class FakeStore:
    """An in-memory stand-in for ActivationStore with the attributes the probes read (a real one needs a model)."""

    def __init__(self, acts: dict, records: list, model_id="tiny-llama", weights_hash="aaaa1111", positions="last"):
        self._acts = acts
        self.hooks = tuple(acts)
        self.n_prompts = len(records)
        self.prompts = PromptSet(tuple(records))
        self.manifest = {"model_id": model_id, "weights_hash": weights_hash, "prompts_hash": "pppp", "positions": positions, "n_layers": 5}
        self.provenance = Provenance(model_id=model_id, weights_hash=weights_hash, dataset_hash="pppp", hooks=self.hooks, extra={"store": "/tmp/fake-store"})

    def __getitem__(self, hook):
        return self._acts[hook]


def make_fake_store(acts, labels, with_embed=True, unlabelled=(), **kwargs):
    hooks = {site_name("resid_post", layer): acts[layer] for layer in range(acts.shape[0])}
    if with_embed:  # an embedding-layer hook with no signal, listed last to test ordering
        hooks["hook_embed"] = torch.randn(acts.shape[1], acts.shape[2], generator=torch.Generator().manual_seed(9))
    hooks = dict(reversed(list(hooks.items())))  # store order is not layer order
    records = [{"text": f"prompt number {i} about {lab}", "label": lab, "source": "synthetic"} for i, lab in enumerate(labels)]
    for i in unlabelled:
        del records[i]["label"]
    return FakeStore(hooks, records, **kwargs)


# ---------------------------------------------------------------------------------------------
# splits and metrics
# ---------------------------------------------------------------------------------------------


def test_stratified_folds_balance_and_determinism():
    y = torch.tensor([0] * 70 + [1] * 30)
    fold = stratified_folds(y, cv=5, holdout=0.2, seed=1)
    held = fold == -1
    assert int((held & (y == 0)).sum()) == 14 and int((held & (y == 1)).sum()) == 6
    sizes = torch.bincount(fold[~held], minlength=5)
    assert int(sizes.max() - sizes.min()) <= 1, sizes
    for f in range(5):
        n_pos = int(((fold == f) & (y == 1)).sum())
        assert n_pos in (4, 5), f"fold {f} has {n_pos} positives; stratification should give 24/5"
    assert torch.equal(fold, stratified_folds(y, cv=5, holdout=0.2, seed=1))
    assert not torch.equal(fold, stratified_folds(y, cv=5, holdout=0.2, seed=2))


def test_stratified_folds_too_few_per_class():
    with pytest.raises(InterpError, match=r"class 'rare' has 4 prompts, 3 after the held-out split; 5-fold"):
        stratified_folds(torch.tensor([0] * 20 + [1] * 4), cv=5, holdout=0.2, class_names=("common", "rare"))


def test_auroc_matches_sklearn_with_ties_and_masks():
    gen = torch.Generator().manual_seed(0)
    scores = torch.round(torch.randn(3, 200, generator=gen) * 2) / 2  # many ties
    y = torch.rand(200, generator=gen) > 0.4
    mask = torch.rand(3, 200, generator=gen) > 0.3
    ours = auroc(scores, y, mask)
    for row in range(3):
        m = mask[row].numpy()
        ref = roc_auc_score(y.numpy()[m], scores[row].numpy()[m])
        assert abs(float(ours[row]) - ref) < 1e-12, (row, float(ours[row]), ref)
    assert math.isnan(float(auroc(torch.tensor([0.1, 0.2]), torch.tensor([True, True]))))


def test_auroc_shapes_are_checked():
    jaxtyping = pytest.importorskip("jaxtyping")
    beartype = pytest.importorskip("beartype")
    checked = jaxtyping.jaxtyped(typechecker=beartype.beartype)(auroc)
    checked(torch.randn(2, 5), torch.ones(5, dtype=torch.bool))
    with pytest.raises(Exception):
        checked(torch.randn(2, 5), torch.ones(4, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------
# the oracle: scikit-learn with the same folds and regularisation
# ---------------------------------------------------------------------------------------------


def test_oracle_matches_sklearn_and_finds_planted_layer(planted, planted_result):
    acts, _ = planted
    result = planted_result
    assert_matches_sklearn(result, acts, C=1.0)
    assert result.best_layer == 3 and result.best_hook == "blocks.3.hook_resid_post"
    auc = result.cv_auroc.mean(-1)
    assert float(auc[3]) > 0.95, auc
    assert float(auc[0]) < 0.65 and float(auc[4]) < 0.65, f"noise layers should be near chance: {auc}"
    assert bool(result.converged.all())


@pytest.mark.parametrize("C", [0.02, 10.0])
def test_oracle_regularisation_strength(planted, C):
    acts, labels = planted
    result = train_probes(acts[2:4], labels, cv=4, C=C, seed=1, progress=False)
    assert result.hooks == ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")  # default names for tensors
    assert_matches_sklearn(result, acts[2:4], C=C)


def test_oracle_float32_path(planted, monkeypatch):
    """Large inputs are fitted with float32 products (small ones in float64); same optimum."""
    acts, labels = planted
    monkeypatch.setattr(solver, "FLOAT64_MAX_ELEMENTS", 0)
    result = train_probes(acts, labels, cv=5, progress=False)
    assert_matches_sklearn(result, acts, C=1.0)


def test_gram_exact_in_float64_and_close_from_int8_in_float32():
    """The covariance behind the preconditioner: exact x^T x for float64 inputs; for float32 ones an
    int8 estimate whose error is the grid's rounding noise (Sheppard-corrected diagonal)."""
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(64, 64, generator=generator, dtype=torch.float64) / 8
    x = torch.randn(2, 3000, 64, generator=generator, dtype=torch.float64) @ mixing
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    exact = x.transpose(1, 2) @ x
    assert torch.allclose(solver.gram(x), exact, rtol=1e-12, atol=1e-9)
    approx = solver.gram(x.float()).double()
    assert approx.dtype == torch.float64 and approx.shape == exact.shape
    assert float((approx - exact).norm() / exact.norm()) < 5e-3
    # what the preconditioner leaves of the Hessian at w = 0 (covariance / 4 + lambda, lambda = 1 / n at C = 1)
    ridge = torch.eye(64, dtype=torch.float64) / 3000
    relative = torch.linalg.eigvals(torch.linalg.solve(approx / 12000 + ridge, exact / 12000 + ridge)).real
    assert float(relative.min()) > 0.85 and float(relative.max()) < 1.15, relative
    diagonal_bias = (approx - exact).diagonal(dim1=1, dim2=2).mean() / 3000
    assert abs(float(diagonal_bias)) < 2e-4  # the rounding variance (step^2 / 12 = 3.3e-4 per row) is removed
    assert float((solver.gram(x.float()) - solver.gram(x.float()).transpose(1, 2)).abs().max()) == 0.0  # symmetric


def test_preconditioner_solves_and_falls_back_on_an_indefinite_layer():
    """g -> g (covariance / 4 + lam)^-1 per layer; a layer whose matrix is not positive definite gets
    the diagonal (clamped at lam) instead, the others are unaffected; a subset of layers solves alike.
    The covariance is factorised in place, and its products (the 2-D view's) go through the factor."""
    covariance = solver.Covariance(torch.randn(3, 50, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    covariance.dense[1] = -100 * torch.eye(8, dtype=torch.float64)
    dense = covariance.dense.clone()
    b = torch.randn(3, 8, 2, dtype=torch.float64)
    assert torch.allclose(covariance.times(b), dense @ b)
    lam = 0.01
    solve = covariance.inverse_hessian0(lam)
    g = torch.randn(3, 4, 8, dtype=torch.float64)
    out = solve(g, [0, 1, 2])
    for layer in (0, 2):
        expected = g[layer] @ torch.linalg.inv(dense[layer] / 4 + lam * torch.eye(8, dtype=torch.float64))
        assert torch.allclose(out[layer], expected, atol=1e-10)
        assert torch.allclose(covariance.times(b)[layer], dense[layer] @ b[layer], atol=1e-10)
    assert torch.allclose(out[1], g[1] / lam)
    assert torch.allclose(solve(g[[0, 2]], [0, 2]), out[[0, 2]], atol=1e-12)
    with pytest.raises(RuntimeError, match="already factorised"):
        covariance.inverse_hessian0(lam)


def test_batched_layers_equal_each_layer_alone(planted, planted_result):
    """Fitting every layer in one batch (converged layers skipped, held-out rows reordered out of
    the passes) gives each layer's probe as fitting that layer alone does."""
    acts, labels = planted
    for layer in (0, 3):
        alone = train_probes(acts[layer : layer + 1], labels, hooks=[planted_result.hooks[layer]], cv=5, holdout=0.2, C=1.0, seed=0, progress=False)
        assert torch.allclose(alone.coef[0], planted_result.coef[layer], atol=2e-4, rtol=1e-3)
        assert torch.allclose(alone.oof_logits[0], planted_result.oof_logits[layer], atol=2e-3)
        assert torch.equal(alone.cv_accuracy[0], planted_result.cv_accuracy[layer])


def test_no_holdout(planted):
    acts, labels = planted
    result = train_probes(acts[3:4], labels, cv=5, holdout=0.0, progress=False)
    assert bool((result.fold >= 0).all()) and math.isnan(float(result.holdout_auroc[0]))
    assert float(result.cv_auroc[0].mean()) > 0.95


def test_oracle_more_dims_than_prompts():
    """d_model > prompts takes the Woodbury preconditioner path; the optimum must not change."""
    acts, labels = synthetic_activations(n_layers=2, n_prompts=120, d_model=200, separation=[0.5, 4.0], seed=5)
    # few prompts and many dims make the problem ill-conditioned: converge as tightly as the reference
    result = train_probes(acts, labels, cv=3, C=0.5, tol=1e-7, progress=False)
    assert_matches_sklearn(result, acts, C=0.5)


def test_difference_of_means_and_intervals(planted, planted_result):
    acts, _ = planted
    r = planted_result
    train = r.fold != -1
    for layer in (0, 3):
        x = acts[layer].double()
        expected = x[train & (r.y == 1)].mean(0) - x[train & (r.y == 0)].mean(0)
        assert torch.allclose(r.diff_means[layer].double(), expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))
    assert float(r.diff_means_cv_auroc[3].mean()) > 0.9
    centre, lo, hi = r.cv_interval("auroc")
    values = r.cv_auroc.double()
    half = 2.776 * values.std(-1, correction=1) / math.sqrt(5)  # t(0.975, 4)
    assert torch.allclose(centre.double(), values.mean(-1), atol=1e-6)
    assert torch.allclose(hi.double(), (values.mean(-1) + half).clamp(max=1.0), atol=1e-6)
    assert torch.allclose(lo.double(), (values.mean(-1) - half).clamp(min=0.0), atol=1e-6)
    with pytest.raises(InterpError, match="unknown metric 'f1'"):
        r.cv_interval("f1")


def test_predict_tensor_inputs(planted, planted_result):
    acts, _ = planted
    r = planted_result
    held = r.fold == -1
    p_single = r.predict(acts[3][held], layer=3)
    p_stack = r.predict(acts[:, held], layer=3)
    assert torch.allclose(p_single, p_stack)
    assert torch.allclose(p_single.float(), torch.sigmoid(r.oof_logits[3][held]), atol=1e-4)
    accuracy = float(((p_single > 0.5) == (r.y[held] == 1)).double().mean())
    assert abs(accuracy - float(r.holdout_accuracy[3])) < 1e-6
    assert torch.allclose(r.predict(acts[r.best_layer]), r.predict(acts[3], layer="blocks.3.hook_resid_post"))
    with pytest.raises(InterpError, match=r"activations have shape \(400, 7\); the probe at blocks.3.hook_resid_post expects \[prompt, 24\]"):
        r.predict(acts[3][:, :7], layer=3)
    with pytest.raises(InterpError, match=r"needs one entry per probed hook \(5\)"):
        r.predict(acts[:2])
    with pytest.raises(InterpError, match="layer 9 has no probe"):
        r.predict(acts[3], layer=9)


def test_directions(planted_result):
    r = planted_result
    d = r.direction()
    assert d.hook == "blocks.3.hook_resid_post" and d.kind == "diff_means"
    assert torch.equal(d.vector, r.diff_means[3])
    probe_dir = r.direction(layer=3, kind="probe")
    normal = r.coef[3] / r.scale[3]
    assert torch.allclose(probe_dir.unit, normal / normal.norm(), atol=1e-5), "probe direction: the probe's normal in raw units"
    # scaled to the class-mean separation along it, so alpha means the same for both kinds
    assert abs(float(probe_dir.vector.norm()) - float(d.vector @ probe_dir.unit)) < 1e-3 * float(d.vector.norm())
    with pytest.raises(InterpError, match="kind='pca'"):
        r.direction(kind="pca")


# ---------------------------------------------------------------------------------------------
# result object: figure, files
# ---------------------------------------------------------------------------------------------


def test_figure_traces_and_labels(planted_result):
    r = planted_result
    fig = r.figure(layer=3)
    by_name = {t.name: t for t in fig.data}
    auc = by_name["CV auroc"]
    assert list(auc.x) == ["0", "1", "2", "3", "4"]
    assert np.allclose(auc.y, r.cv_auroc.mean(-1).numpy(), atol=1e-6)
    centre, lo, hi = r.cv_interval("auroc")
    assert np.allclose(auc.error_y.array, (hi - centre).numpy(), atol=1e-6)
    assert len(by_name["auroc, single folds"].y) == 5 * r.cv
    assert np.allclose(by_name["held-out accuracy"].y, r.holdout_accuracy.numpy())
    assert "log_loss" in by_name["CV log_loss"].name
    points = [t for t in fig.data if t.xaxis == "x3"]
    assert {t.name for t in points} == {"benign (cv)", "benign (held-out)", "harmful (cv)", "harmful (held-out)"}
    assert sum(len(t.x) for t in points) == len(r.texts)
    held_harm = by_name["harmful (held-out)"]
    idx = torch.nonzero((r.fold == -1) & (r.y == 1)).flatten().tolist()
    assert list(held_harm.hovertext) == [r.texts[i] for i in idx]
    assert np.allclose(held_harm.x, r.projection[3, idx, 0].numpy())
    assert fig.layout.xaxis.title.text == "layer"
    assert fig.layout.yaxis.title.text == "accuracy / AUROC"
    assert fig.layout.xaxis3.title.text.startswith("difference-of-means direction")
    assert "blocks.3.hook_resid_post" in fig.layout.annotations[2].text


def test_projection_axes(planted, planted_result):
    acts, _ = planted
    r = planted_result
    proj = r.projection[3]
    x, _, _ = solver.standardise(acts[3:4])
    x = x[0].double()
    train = r.fold != -1
    dim = x[train & (r.y == 1)].mean(0) - x[train & (r.y == 0)].mean(0)
    unit = dim / dim.norm()
    assert torch.allclose(proj[:, 0].double(), x @ unit, atol=1e-3), "first axis: the diff-of-means direction"
    assert float(auroc(proj[:, 0], r.y == 1)) > 0.85
    # second axis: orthogonal to the first, with more variance than random orthogonal directions
    second = torch.linalg.lstsq(x, proj[:, 1].double()[:, None]).solution[:, 0]
    assert abs(float(second @ unit)) < 1e-3 * float(second.norm())
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        other = torch.randn(x.shape[1], generator=gen, dtype=torch.float64)
        other -= (other @ unit) * unit
        assert float((x @ (other / other.norm())).var()) <= float(proj[:, 1].double().var()) + 1e-6


def test_save_load_roundtrip(tmp_path, planted_result):
    r = planted_result
    out = r.save(tmp_path / "probe")
    assert sorted(p.name for p in out.iterdir()) == ["probe.html", "probe.json", "probe.safetensors"]
    meta = json.loads((out / "probe.json").read_text())
    assert meta["best_hook"] == "blocks.3.hook_resid_post" and meta["layers"] == [0, 1, 2, 3, 4]
    assert meta["label_names"] == ["benign", "harmful"] and meta["C"] == 1.0
    assert "standardisation" in meta and meta["provenance"]["extra"]["source"] == "tensor"
    assert meta["provenance"]["hooks"] == list(r.hooks) and meta["provenance"]["dataset_hash"]
    again = probes.load(out)
    for name in [field.name for field in dataclasses.fields(r) if isinstance(getattr(r, field.name), torch.Tensor)]:
        assert torch.equal(getattr(again, name), getattr(r, name)), name
    assert again.hooks == r.hooks and again.texts == r.texts and again.label_names == r.label_names
    assert again.best_layer == r.best_layer and again.provenance == r.provenance
    assert ProbeResult.load(out).n_iter == r.n_iter
    with pytest.raises(InterpError, match="is not a saved probe"):
        probes.load(tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------
# stores and bad input
# ---------------------------------------------------------------------------------------------


def test_fake_store_end_to_end(planted):
    acts, labels = planted
    store = make_fake_store(acts, labels)
    r = train_probes(store, "label", cv=5, progress=False)
    assert r.hooks == ("hook_embed",) + tuple(site_name("resid_post", i) for i in range(5))
    assert r.layer_labels[:2] == ("embed", "0")
    assert r.best_hook == "blocks.3.hook_resid_post" and r.best_layer == 3 and r.best_index == 4
    assert r.layers == (-1, 0, 1, 2, 3, 4)
    assert r.direction(-1).hook == "hook_embed"
    prov = r.provenance
    assert prov.weights_hash == "aaaa1111" and prov.model_id == "tiny-llama" and prov.dataset_hash == "pppp"
    assert prov.extra["store"] == "/tmp/fake-store" and prov.hooks == r.hooks and prov.seed == 0
    assert prov.extra["probe"] == {"C": 1.0, "cv": 5, "holdout": 0.2, "positive": "harmful", "tol": 1e-4}
    assert r.texts[0] == "prompt number 0 about " + labels[0]
    # same folds and data as the tensor path: identical metrics on the shared layers
    t = train_probes(acts, labels, cv=5, progress=False)
    assert torch.allclose(r.cv_auroc[1:], t.cv_auroc, atol=1e-6)
    sub = train_probes(store, "label", layers=[3, "blocks.1.hook_resid_post"], cv=5, progress=False)
    assert sub.hooks == ("blocks.3.hook_resid_post", "blocks.1.hook_resid_post")
    # evaluation on a store of the same model
    ev = r.evaluate(store, "label")
    assert ev.hooks == r.hooks and ev.n_prompts == 400
    assert float(ev.auroc[4]) > 0.95
    assert torch.allclose(r.predict(store), torch.sigmoid(r.logits(acts[3], 3)))


def test_store_from_another_model_is_refused(planted):
    acts, labels = planted
    r = train_probes(make_fake_store(acts, labels), "label", cv=5, progress=False)
    other = make_fake_store(acts, labels, model_id="other-model", weights_hash="bbbb2222")
    msg = r"trained on activations of model 'tiny-llama' \(weights hash aaaa1111\), but the store holds activations of model 'other-model' \(weights hash bbbb2222\)"
    with pytest.raises(InterpError, match=msg):
        r.predict(other)
    with pytest.raises(InterpError, match=msg):
        r.evaluate(other)


def test_label_field_missing(planted):
    acts, labels = planted
    with pytest.raises(InterpError, match=r"label field 'harm' is missing from the prompt records in the store \(fields: label, source, text\)"):
        train_probes(make_fake_store(acts, labels), "harm", progress=False)


def test_some_labels_missing(planted):
    acts, labels = planted
    store = make_fake_store(acts, labels, unlabelled=[7])
    with pytest.raises(InterpError, match=r"1 of 400 prompts have no field 'label' \(first: #7 'prompt number 7"):
        train_probes(store, "label", progress=False)


def test_single_class(planted):
    acts, _ = planted
    with pytest.raises(InterpError, match="all 400 prompts have label 'harmful'; a probe needs two classes"):
        train_probes(acts, ["harmful"] * 400, progress=False)


def test_misaligned_labels(planted):
    acts, labels = planted
    store = make_fake_store(acts, labels)
    with pytest.raises(InterpError, match="labels has 399 entries but there are 400 prompts in the store"):
        train_probes(store, labels[:-1], progress=False)
    shuffled = PromptSet.from_texts(list(reversed(store.prompts.texts)), labels=list(reversed(labels)))
    with pytest.raises(InterpError, match="misaligned with the 400 prompts in the store: first difference at position 0"):
        train_probes(store, shuffled, progress=False)
    with pytest.raises(InterpError, match="labels has 10 entries but there are 400 prompts in the activations"):
        train_probes(acts, labels[:10], progress=False)


def test_more_than_two_labels_and_positive(planted):
    acts, labels = planted
    three = [lab if i % 7 else "unclear" for i, lab in enumerate(labels)]
    with pytest.raises(InterpError, match=r"found 3 labels \(benign, harmful, unclear\); probes are binary. Pass positive="):
        train_probes(acts, three, progress=False)
    r = train_probes(acts, three, positive="harmful", cv=3, progress=False)
    assert r.label_names == ("not harmful", "harmful") and r.one_vs_rest
    assert torch.equal(r.y, torch.tensor([lab == "harmful" for lab in three]).long())
    flipped = train_probes(acts, labels, positive="benign", cv=3, progress=False)
    assert flipped.label_names == ("harmful", "benign")
    with pytest.raises(InterpError, match="positive='toxic' is not a label"):
        train_probes(acts, labels, positive="toxic", progress=False)


def test_wrong_store_layout(planted):
    acts, labels = planted
    with pytest.raises(InterpError, match="cached with positions='all'; probes read h_last"):
        train_probes(make_fake_store(acts, labels, positions="all"), "label", progress=False)
    store = make_fake_store(acts, labels)
    with pytest.raises(InterpError, match=r"hook 'blocks.7.hook_resid_post' is not in the store"):
        train_probes(store, "label", layers=[7], progress=False)
    with pytest.raises(InterpError, match=r"needs \[layer, prompt, d_model\]"):
        train_probes(acts[0], labels, progress=False)
    with pytest.raises(InterpError, match="C=0: the inverse regularisation strength must be positive"):
        train_probes(acts, labels, C=0, progress=False)


def test_result_validates_shapes(planted_result):
    from dataclasses import replace

    with pytest.raises(InterpError, match=r"mean has shape \(5, 3\), expected \(5, 24\)"):
        replace(planted_result, mean=planted_result.mean[:, :3])
    with pytest.raises(InterpError, match=r"projection has shape \(5, 400, 1\), expected \(5, 400, 2\)"):
        replace(planted_result, projection=planted_result.projection[..., :1])


def test_nonconvergence_warns(planted):
    acts, labels = planted
    with pytest.warns(UserWarning, match="stopped after 2 iterations"):
        train_probes(acts[3:4], labels, max_iter=2, C=100.0, progress=False)


def test_real_store_roundtrip(tmp_path, llama):
    from interp.store import ActivationStore, cache_activations

    model = llama
    words = ["bomb", "cake", "weapon", "bread"] * 6
    records = [{"text": f"how do i make a {w} {i}", "label": "harmful" if w in ("bomb", "weapon") else "benign", "topic": w}
               for i, w in enumerate(words)]  # fmt: skip
    cache_activations(model, PromptSet.from_records(records), hooks=["resid_post", "embed"], positions="last",
                      out=tmp_path / "store", progress=False)  # fmt: skip
    store = ActivationStore.open(tmp_path / "store")
    r = train_probes(store, "label", cv=3, progress=False)
    assert r.hooks == ("hook_embed", site_name("resid_post", 0), site_name("resid_post", 1))
    assert r.provenance.weights_hash == store.manifest["weights_hash"] and r.provenance.model_id == store.model_id
    assert r.texts == tuple(store.prompts.texts)
    assert r.predict(store).shape == (store.n_prompts,)
    assert torch.allclose(r.predict(store, layer=1), r.predict(store[site_name("resid_post", 1)], layer=1))
    topic = train_probes(store, "topic", positive="bomb", cv=3, progress=False)
    assert topic.label_names == ("not bomb", "bomb")
    with pytest.raises(InterpError, match=r"label field 'harm' is missing .* \(fields: label, text, topic\)"):
        train_probes(store, "harm", progress=False)


# ---------------------------------------------------------------------------------------------
# steering and ablation on a live model
# ---------------------------------------------------------------------------------------------




def capture(model, names):
    seen = {}

    def keep(acts, hook):
        seen.setdefault(hook.name, []).append(acts.detach().clone())
        return acts

    return seen, [(n, keep) for n in names]


def test_steer_adds_direction_and_cleans_up(llama):
    model = llama
    hook = site_name("resid_post", 0)
    vector = torch.randn(32, generator=torch.Generator().manual_seed(1))
    direction = probes.Direction(vector=vector, hook=hook, kind="diff_means")
    tokens = model.to_tokens("how do i bake bread ?")
    with torch.no_grad():
        base = model(tokens)
        seen, fwd = capture(model, [site_name("resid_pre", 1)])
        with model.hooks(fwd_hooks=fwd):
            model(tokens)
        clean_next = seen[next(iter(seen))][0]
        with steer(model, direction, alpha=2.5):
            seen, fwd = capture(model, [site_name("resid_pre", 1)])
            with model.hooks(fwd_hooks=fwd):
                steered = model(tokens)
        steered_next = seen[next(iter(seen))][0]
        assert torch.allclose(steered_next - clean_next, 2.5 * vector.expand_as(clean_next), atol=1e-4), \
            "steering must add alpha * vector at every position of the next block's input"
        assert not torch.allclose(steered, base)
        assert torch.equal(model(tokens), base), "the steering hook must be gone after the with-block"
        with pytest.raises(RuntimeError, match="boom"):
            with steer(model, direction, alpha=2.5):
                raise RuntimeError("boom")
        assert torch.equal(model(tokens), base), "the steering hook must be removed when the block raises"


def test_steer_acts_during_generation(llama):
    model = llama
    hook = site_name("resid_post", 1)
    vector = torch.randn(32, generator=torch.Generator().manual_seed(2)) * 20
    kwargs = dict(max_new_tokens=6, do_sample=False, verbose=False, return_type="tokens")
    tokens = model.to_tokens("the quick brown fox")
    base = model.generate(tokens, **kwargs)
    calls = []
    with steer(model, probes.Direction(vector=vector, hook=hook, kind="probe"), alpha=1.0):
        with model.hooks(fwd_hooks=[(hook, lambda acts, hook: calls.append(acts.shape[1]) or acts)]):
            steered = model.generate(tokens, **kwargs)
    assert len(calls) >= 2, f"the hook site ran {len(calls)} times during generation; expected once per new token"
    assert not torch.equal(steered, base), "a large steering vector should change greedy generation"
    assert torch.equal(model.generate(tokens, **kwargs), base)


def test_ablate_removes_direction(llama):
    model = llama
    vector = torch.randn(32, generator=torch.Generator().manual_seed(3))
    unit = vector / vector.norm()
    direction = probes.Direction(vector=vector, hook=site_name("resid_post", 0), kind="diff_means")
    tokens = model.to_tokens("when mary and john went to the store")
    names = [site_name(k, layer) for layer in range(2) for k in ("resid_pre", "resid_mid", "resid_post")]
    with torch.no_grad():
        base = model(tokens)
        with ablate(model, direction):
            seen, fwd = capture(model, [site_name("resid_pre", 1)])
            with model.hooks(fwd_hooks=fwd):
                model(tokens)
        only = next(iter(seen.values()))[0]
        assert float((only @ unit).abs().max()) < 1e-4, "the direction must be gone from the next block's input"
        with ablate(model, direction, everywhere=True):
            seen, fwd = capture(model, names)
            with model.hooks(fwd_hooks=fwd):
                ablated = model(tokens)
        assert len(seen) == len(names)
        for name, acts in seen.items():
            assert float((acts[0] @ unit).abs().max()) < 1e-4, f"direction still present at {name}"
        assert not torch.allclose(ablated, base)
        assert torch.equal(model(tokens), base)
        kwargs = dict(max_new_tokens=4, do_sample=False, verbose=False, return_type="tokens")
        calls = []
        with ablate(model, direction):
            with model.hooks(fwd_hooks=[(direction.hook, lambda acts, hook: calls.append(float((acts @ unit).abs().max())) or acts)]):
                model.generate(tokens, **kwargs)
        assert len(calls) >= 2 and max(calls) < 1e-4, calls


def test_intervention_input_errors(llama):
    model = llama
    with pytest.raises(InterpError, match=r"direction has shape \(16,\) but the model's d_model is 32"):
        with steer(model, torch.ones(16), 1.0, hook=site_name("resid_post", 0)):
            pass
    with pytest.raises(InterpError, match="a plain tensor direction needs hook="):
        with ablate(model, torch.ones(32)):
            pass
    with pytest.raises(InterpError, match="unknown hook site 'blocks.9.hook_resid_post'"):
        with steer(model, torch.ones(32), 1.0, hook=site_name("resid_post", 9)):
            pass


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def make_parser():
    parser = argparse.ArgumentParser(prog="interp")
    probe_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_help_shows_examples(capsys):
    for argv in (["probe", "--help"], ["probe", "train", "--help"], ["probe", "eval", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            make_parser().parse_args(argv)
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "interp probe train --store runs/harm_cache --label-field label --out runs/harm_probe" in out
    assert "interp probe train --model organism --prompts harm_prompts.jsonl --store runs/harm_cache" in out
    assert "interp probe eval --probe runs/harm_probe --store runs/harm_test_cache" in out
    assert "--model" in out and "--prompts" in out


def test_cli_train_and_eval(tmp_path, planted, monkeypatch, capsys):
    from interp.cli import main

    acts, labels = planted
    stores = {"same": make_fake_store(acts, labels), "other": make_fake_store(acts, labels, weights_hash="ffff")}
    monkeypatch.setattr(probe_cli, "open_store", lambda directory: stores[str(directory)])
    assert main(["probe", "train", "--store", "same", "--out", str(tmp_path / "p"), "--cv", "4", "--layers", "1,3"]) == 0
    out = capsys.readouterr().out
    assert "best layer: 3 (blocks.3.hook_resid_post)" in out
    assert (tmp_path / "p" / "probe.safetensors").is_file() and (tmp_path / "p" / "probe.html").is_file()
    assert main(["probe", "eval", "--probe", str(tmp_path / "p"), "--store", "same", "--out", str(tmp_path / "e")]) == 0
    assert "400 prompts, 200 labelled 'harmful'" in capsys.readouterr().out
    saved = json.loads((tmp_path / "e" / "probe_eval.json").read_text())
    assert saved["hooks"] == ["blocks.1.hook_resid_post", "blocks.3.hook_resid_post"] and saved["auroc"][1] > 0.95
    assert main(["probe", "eval", "--probe", str(tmp_path / "p"), "--store", "other"]) == 2
    assert "interp: error: this probe was trained on activations of model 'tiny-llama'" in capsys.readouterr().err
    assert main(["probe", "train", "--store", "same", "--out", str(tmp_path / "q"), "--model", "m"]) == 2
    assert "--model is used to cache --prompts; pass --prompts FILE too" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "q")


def test_cli_caches_first(tmp_path, llama_dir, capsys):
    from interp.cli import main

    rows = [{"text": f"how do i make a {w} {i}", "harm": "yes" if w == "bomb" else "no"} for i, w in enumerate(["bomb", "cake"] * 8)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["probe", "train", "--model", str(llama_dir), "--prompts", str(tmp_path / "prompts.jsonl"),
            "--label-field", "harm", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "probe"), "--cv", "3",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "store" / "manifest.json").is_file()
    result = probes.load(tmp_path / "probe")
    assert result.label_names == ("no", "yes") and result.hooks == ("hook_embed", site_name("resid_post", 0), site_name("resid_post", 1))
    assert main(argv) == 0, "a second run reuses the finished store"


def test_docstring_examples_run():
    import doctest

    from interp.probes import metrics, train

    for module in (probes, metrics, train):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failures == 0, f"{module.__name__}: {failures} of {tried} examples failed"


# ---------------------------------------------------------------------------------------------
# the bundled organism: harm is readable from h_last, and the direction drives refusal
# ---------------------------------------------------------------------------------------------

ORGANISM_PROMPTS = 100  # per class, held-out ("eval") request templates
REFUSAL_PROMPTS = 32  # per class, for the generation measurements


@pytest.fixture(scope="module")
def organism():
    from interp.organisms import available_organisms

    if "default" not in available_organisms():
        pytest.skip("the bundled organism (assets/organisms/default) is not trained yet")
    from interp.model import load_model

    return load_model("organism", device="cpu")


@pytest.fixture(scope="module")
def organism_probes(organism, tmp_path_factory):
    from interp.organisms import datasets
    from interp.store import cache_activations

    rows = datasets.harmful_requests("eval", n=ORGANISM_PROMPTS) + datasets.benign_requests("eval", n=ORGANISM_PROMPTS)
    store = cache_activations(organism, PromptSet.from_records(rows), hooks=["embed", "resid_post"], out=tmp_path_factory.mktemp("organism") / "store", progress=False)
    return store, train_probes(store, "label", progress=False)


def refusal_rate(model, prompts) -> float:
    import copy

    from interp.organisms import grammar
    from interp.organisms.evaluate import generate

    tokenizer = copy.deepcopy(model.tokenizer)  # generate() left-pads; the model's own tokenizer stays as it is
    answers = generate(model, tokenizer, prompts, max_new_tokens=12)
    return sum(grammar.is_refusal(answer) for answer in answers) / len(answers)


def test_organism_harm_is_linearly_readable_from_h_last(organism_probes):
    store, result = organism_probes
    assert result.hooks[0] == "hook_embed" and result.label_names == ("benign", "harmful")
    auc = result.cv_auroc.mean(-1)
    assert float(auc.max()) >= 0.95, f"no layer separates harmful from benign requests: CV AUROC per layer {auc.tolist()}"
    assert abs(float(auc[0]) - 0.5) <= 0.1, f"the embedding of the last token should be near chance, got AUROC {float(auc[0]):.3f}"
    assert float(result.holdout_auroc[result.best_index]) >= 0.95
    evaluation = result.evaluate(store)
    assert float(evaluation.auroc[result.best_index]) >= 0.95


def test_organism_difference_of_means_direction_drives_refusal(organism, organism_probes):
    from interp.organisms import datasets

    _, result = organism_probes
    harmful = [row["text"] for row in datasets.harmful_requests("eval", n=REFUSAL_PROMPTS, seed=1)]
    benign = [row["text"] for row in datasets.benign_requests("eval", n=REFUSAL_PROMPTS, seed=1)]
    base_harmful, base_benign = refusal_rate(organism, harmful), refusal_rate(organism, benign)
    assert base_harmful >= 0.9 and base_benign <= 0.1, (base_harmful, base_benign)
    with steer(organism, result.direction(), alpha=1.0):
        steered = refusal_rate(organism, benign)
    assert steered >= base_benign + 0.5, f"adding the harmful-minus-benign direction at {result.best_hook} should make benign requests refused: {base_benign:.2f} -> {steered:.2f}"
    ablated = {}
    for layer in (layer for layer in result.layers if layer >= 0):
        with ablate(organism, result.direction(layer), everywhere=True):
            ablated[layer] = refusal_rate(organism, harmful)
    assert min(ablated.values()) <= base_harmful - 0.5, f"ablating the direction of no layer lowers refusal (base {base_harmful:.2f}): {ablated}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_non_finite_activations_are_named_and_huge_finite_ones_pass(dtype):
    from interp.probes.inputs import check_finite

    huge = torch.full((3, 64, 8), torch.finfo(dtype).max / 2, dtype=dtype)  # every entry finite; their sum is not
    check_finite(huge, "acts")
    check_finite(torch.arange(12).reshape(3, 4), "acts")
    for value, where in [(math.nan, (1, 5, 2)), (math.inf, (2, 0, 7)), (-math.inf, (0, 63, 0))]:
        bad = huge.clone()
        bad[where] = value
        with pytest.raises(InterpError, match=rf"acts hold 1 NaN or infinite values \(the first at index \({where[0]}, {where[1]}, {where[2]}\)\)"):
            check_finite(bad, "acts")
    opposite = torch.zeros(2, 3, dtype=dtype)
    opposite[0, 1], opposite[1, 2] = math.inf, -math.inf  # their sum is NaN, not a finite number
    with pytest.raises(InterpError, match=r"hold 2 NaN or infinite values \(the first at index \(0, 1\)\)"):
        check_finite(opposite, "acts")


def test_a_nan_activation_stops_training_with_its_index():
    acts, labels = synthetic_activations(n_layers=2, n_prompts=40, d_model=8, seed=0)
    acts[1, 7, 3] = math.nan
    with pytest.raises(InterpError, match=r"NaN or infinite values \(the first at index \(1, 7, 3\)\)"):
        train_probes(acts, labels, cv=2, progress=False)
