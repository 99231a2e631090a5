"""Sparse probing: feature sites, ``encode_store`` (a dictionary's codes as a store) and k-sparse probes
(``train_probes(top_features=k)``) against planted features, scikit-learn, leakage and bad input."""

import numpy as np
import pytest
import torch

from interp.data import PromptSet
from interp.dictionaries import SparseDictionary, encode_store
from interp.errors import InterpError
from interp.probes import ProbeResult, stratified_folds, train_probes
from interp.probes.inputs import layer_label
from interp.probes.metrics import HOLDOUT
from interp.sites import expand_sites, feature_site, parse_site, site_name

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

METRIC_TOL = 0.01  # as tests/probes/test_probes.py: within 1 point of scikit-learn, per fold
COEF_TOL = 0.02  # relative to the largest coefficient; both solvers stop at max |grad| <= 1e-4
SITE = "blocks.1.hook_resid_post"
WORDS = ["bomb", "cake", "weapon", "bread"]


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def planted_codes(n: int = 400, d_sae: int = 32, informative: dict[int, float] | None = None, seed: int = 0):
    """Sparse non-negative codes [1, n, d_sae]: noise everywhere, ``feature: separation`` added to the positives."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2 == 1
    codes = torch.relu(torch.randn(1, n, d_sae, generator=generator) - 0.5)
    for feature, separation in (informative or {}).items():
        codes[0, :, feature] += separation * y.float()
    return codes, ["yes" if value else "no" for value in y.tolist()], y


# ---- feature sites ---------------------------------------------------------------------------------


def test_feature_site_names_parse_with_the_layer_of_their_site():
    name = feature_site(SITE)
    assert name == "blocks.1.hook_resid_post.features"
    site = parse_site(name)
    assert (site.layer, site.kind, site.is_features, site.name) == (1, "resid_post features", True, name)
    assert site.encodes == parse_site(SITE) and not parse_site(SITE).is_features
    assert site_name("resid_post features", 1) == name
    assert expand_sites([name, "hook_embed.features"], n_layers=2) == (name, "hook_embed.features")
    assert layer_label(name) == "L1 resid_post features" and layer_label("hook_embed.features") == "embed features"
    with pytest.raises(InterpError, match="already a feature site"):
        feature_site(name)
    for bad in (name + ".features", "blocks.1.hook_resid_pst.features"):
        with pytest.raises(InterpError, match="unknown hook site"):
            parse_site(bad)
    with pytest.raises(InterpError, match="unknown hook site"):
        expand_sites(["blocks.5.hook_resid_post.features"], n_layers=2)  # no layer 5


# ---- k-sparse probes on planted codes --------------------------------------------------------------


def test_planted_feature_is_chosen_and_read_alone():
    codes, labels, _ = planted_codes(informative={11: 2.5})
    result = train_probes(codes, labels, cv=4, holdout=0.25, top_features=1, progress=False)
    assert result.features.tolist() == [[11]]
    assert float(result.holdout_auroc[0]) >= 0.99 and float(result.cv_auroc.mean()) >= 0.99
    assert torch.nonzero(result.coef[0]).flatten().tolist() == [11]  # zero outside the chosen feature
    assert "sparse probes on 1 of 32 features" in result.summary()
    # the same probe on one non-informative feature is at chance
    control = train_probes(codes[:, :, [3]], labels, cv=4, holdout=0.25, progress=False)
    assert abs(float(control.holdout_auroc[0]) - 0.5) < 0.15, control.holdout_auroc


def test_k_planted_features_are_the_k_chosen_in_order_of_separation():
    codes, labels, _ = planted_codes(informative={4: 1.0, 20: 3.0, 9: 2.0})
    result = train_probes(codes, labels, cv=3, holdout=0.2, top_features=3, progress=False)
    assert result.features.tolist() == [[20, 9, 4]]
    assert float(result.holdout_auroc[0]) >= 0.99


def _select(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    score = np.abs(x[y].mean(0) - x[~y].mean(0))
    return np.argsort(-score, kind="stable")[:k]


def test_oracle_matches_sklearn_on_the_chosen_columns():
    """Each problem's features from its training rows, then StandardScaler + LogisticRegression(C) on them."""
    codes, labels, y = planted_codes(n=360, informative={2: 0.8, 7: 0.6, 15: 0.5, 30: 0.3}, seed=1)
    C, k, cv = 0.5, 3, 4
    result = train_probes(codes, labels, cv=cv, holdout=0.2, C=C, seed=2, top_features=k, progress=False)
    x, y_np, fold = codes[0].double().numpy(), y.numpy(), result.fold.numpy()
    for f in [*range(cv), -1]:
        train = (fold != f) & (fold != HOLDOUT) if f >= 0 else fold != HOLDOUT
        test = fold == f
        columns = _select(x[train], y_np[train], k)
        scaler = StandardScaler().fit(x[train][:, columns])
        model = LogisticRegression(C=C, max_iter=10_000, tol=1e-8)
        model.fit(scaler.transform(x[train][:, columns]), y_np[train])
        p = model.predict_proba(scaler.transform(x[test][:, columns]))[:, 1]
        ours = float(result.holdout_auroc[0] if f < 0 else result.cv_auroc[0, f])
        pairs = int((y_np[test]).sum() * (~y_np[test]).sum())
        assert abs(ours - roc_auc_score(y_np[test], p)) <= max(METRIC_TOL, 1 / pairs + 1e-6), (f, ours)
    assert result.features[0].tolist() == columns.tolist()
    coef = result.coef[0, columns].numpy()
    assert np.abs(coef - model.coef_[0]).max() / np.abs(model.coef_[0]).max() <= COEF_TOL, (coef, model.coef_[0])
    assert abs(float(result.intercept[0]) - model.intercept_[0]) <= 0.05
    # the full-width probe reproduces sklearn's probabilities on every prompt
    everything = model.predict_proba(scaler.transform(x[:, columns]))[:, 1]
    assert np.allclose(result.predict(codes[0], layer=0).numpy(), everything, atol=0.01)


def test_selection_reads_training_rows_only():
    """A feature informative only on held-out prompts is never chosen; one informative only on fold 0's rows is
    not chosen by the problem that tests on fold 0 (its CV AUROC stays that of the weak honest feature)."""
    n, cv, holdout, seed = 400, 4, 0.25, 5
    codes, labels, y = planted_codes(n=n, informative={6: 0.4}, seed=3)
    fold = stratified_folds(y.long(), cv=cv, holdout=holdout, seed=seed, class_names=("no", "yes"))
    codes[0, (fold == HOLDOUT) & y, 12] += 10.0  # the held-out prompts' label, written into feature 12
    codes[0, (fold == 0) & y, 25] += 10.0  # fold 0's label, written into feature 25
    result = train_probes(codes, labels, cv=cv, holdout=holdout, seed=seed, top_features=1, progress=False)
    assert torch.equal(result.fold, fold)
    assert result.features.tolist() == [[25]]  # on the non-held-out prompts 25 separates most (fold 0 included)
    assert float(result.cv_auroc[0, 0]) < 0.9  # fold 0's own problem chose feature 6, not 25
    assert float(result.cv_auroc[0, 1]) < 0.7  # fold 1's chose 25, which is noise on fold 1
    leaky = train_probes(codes, labels, cv=cv, holdout=0.0, seed=seed, top_features=1, progress=False)
    assert leaky.features.tolist() == [[12]]  # with the held-out prompts among the training rows it would win


def test_sparse_result_saves_and_loads_its_features(tmp_path):
    codes, labels, _ = planted_codes(n=120, informative={1: 2.0, 3: 1.5})
    result = train_probes(codes, labels, cv=3, top_features=2, progress=False)
    loaded = ProbeResult.load(result.save(tmp_path / "sparse"))
    assert torch.equal(loaded.features, result.features) and torch.equal(loaded.coef, result.coef)
    assert loaded.provenance.extra["probe"]["top_features"] == 2
    dense = train_probes(codes, labels, cv=3, progress=False)
    assert dense.features is None and ProbeResult.load(dense.save(tmp_path / "dense")).features is None


# ---- encode_store on a tiny model's store ----------------------------------------------------------


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from interp.model import load_model
    from interp.testing import build_tiny_model

    return load_model(build_tiny_model("llama", tmp_path_factory.mktemp("sparse_probing") / "llama"), device="cpu")


@pytest.fixture(scope="module")
def store(llama, tmp_path_factory):
    from interp.store import cache_activations

    records = [{"text": f"how do i make a {w} {i}", "label": "harmful" if w in ("bomb", "weapon") else "benign"}
               for i, w in enumerate(WORDS * 6)]  # fmt: skip
    return cache_activations(llama, PromptSet.from_records(records), hooks=["resid_post"], positions="last",
                             out=tmp_path_factory.mktemp("sparse_store") / "store", batch_size=4, shard_size=8,
                             progress=False)  # fmt: skip


def _dictionary(model, site: str = SITE, **fields) -> SparseDictionary:
    from interp.model.weights import weights_hash

    d, d_sae = model.cfg.d_model, 48
    generator = torch.Generator().manual_seed(0)
    weights = dict(W_enc=torch.randn(d, d_sae, generator=generator), b_enc=torch.zeros(d_sae),
                   W_dec=torch.randn(d_sae, d, generator=generator), b_dec=torch.zeros(d))  # fmt: skip
    return SparseDictionary(**{**weights, "activation": "topk", "k": 8, "site": site, "model_id": "tiny-llama",
                               "weights_hash": weights_hash(model), **fields})  # fmt: skip


def test_encode_store_round_trip_and_probes_on_it(llama, store, tmp_path):
    dictionary = _dictionary(llama)
    features = encode_store(store, dictionary, tmp_path / "features")
    name = feature_site(SITE)
    assert features.hooks == (name,) and len(features.shard_ranges) == 3
    assert torch.equal(features[name], dictionary.encode(store[SITE]))
    assert features.prompts.records == store.prompts.records and features.positions == "last"
    provenance = features.provenance
    assert (provenance.model_id, provenance.weights_hash, provenance.dataset_hash) == (
        store.model_id, store.weights_hash, store.provenance.dataset_hash)  # fmt: skip
    recorded = provenance.extra["derived"]["dictionary"]
    assert recorded["site"] == SITE and recorded["d_sae"] == 48 and recorded["weights_hash"] == dictionary.weights_hash
    assert len(recorded["hash"]) == 32 and provenance.extra["derived"]["source_store"] == str(store.root)
    dense = train_probes(features, "label", cv=3, progress=False)  # layers="all": every feature site
    assert dense.hooks == (name,) and dense.d_model == 48 and dense.layer_labels == ("L1 resid_post features",)
    figure = dense.figure()
    assert "L1 resid_post features" in figure.data[0].x
    sparse = train_probes(features, "label", cv=3, top_features=4, progress=False)
    assert sparse.features.shape == (1, 4) and sparse.predict(features).shape == (store.n_prompts,)
    assert sparse.provenance.extra["derived"]["dictionary"]["hash"] == recorded["hash"]


def test_encode_store_leaves_nothing_when_interrupted(llama, store, tmp_path, monkeypatch):
    dictionary = _dictionary(llama)
    calls = []
    encode = SparseDictionary.encode

    def failing(self, x):
        calls.append(len(x))
        if len(calls) == 2:  # the second of three shards
            raise RuntimeError("interrupted")
        return encode(self, x)

    monkeypatch.setattr(SparseDictionary, "encode", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        encode_store(store, dictionary, tmp_path / "features")
    assert list(tmp_path.iterdir()) == []


def test_encode_store_bad_input(llama, store, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    other = _dictionary(llama, model_id="other-model", weights_hash="0" * 32)
    cases = [
        (_dictionary(llama, site="blocks.0.hook_mlp_out"), "a",
         r"has no activations at 'blocks.0.hook_mlp_out', the dictionary's site"),
        (other, "b", r"trained on other-model \(weights 000000000000\), not on .* the model of the store at"),
        (_dictionary(llama, site=""), "c", "names no site"),
        (_dictionary(llama), "full", "already exists and is not empty"),
    ]  # fmt: skip
    for dictionary, out, message in cases:
        with pytest.raises(InterpError, match=message) as error:
            encode_store(store, dictionary, tmp_path / out)
        one_line(error)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["full"]  # nothing half-written


WIDTH_MESSAGE = r"k between 1 and 32 \(the width of blocks.0.hook_resid_post\)"


@pytest.mark.parametrize("k, message", [(0, "k a whole number, at least 1"), (-2, "at least 1"), (33, WIDTH_MESSAGE)])
def test_top_features_out_of_range(k, message):
    codes, labels, _ = planted_codes(n=60)
    with pytest.raises(InterpError, match=message) as error:
        train_probes(codes, labels, cv=3, top_features=k, progress=False)
    one_line(error)
