"""Provenance records the library versions a result was made under; loading one from other versions warns once."""

import json
import subprocess
import warnings
from importlib import metadata
from pathlib import Path

import pytest

import interp
from interp import provenance
from interp.provenance import Provenance, library_versions

REPOSITORY = Path(interp.__file__).resolve().parents[1]


def test_versions_are_the_installed_ones():
    versions = library_versions()
    assert versions["interp"] == interp.__version__
    for package in ("torch", "transformers", "transformer-lens"):
        assert versions[package.replace("-", "_")] == metadata.version(package), package
    if (REPOSITORY / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        assert versions["git_commit"] == head
    assert Provenance("m", "h").versions == versions


def test_a_loaded_model_records_the_active_workarounds(load_tiny):
    from interp.model import compat

    load_tiny("llama")
    assert Provenance("m", "h").workarounds == tuple(compat.active_workarounds())


def _saved_lens(load_tiny, tmp_path) -> Path:
    from interp.lens import logit_lens

    out = tmp_path / "lens"
    logit_lens(load_tiny("gpt2"), ["the quick brown fox"], positions="last").save(out)
    return out


def _rewrite_versions(directory: Path, **versions: str) -> None:
    for path in directory.glob("*.json"):
        data = json.loads(path.read_text())
        if "provenance" in data:
            data["provenance"]["versions"].update(versions)
            path.write_text(json.dumps(data))
            return
    raise AssertionError(f"no saved provenance in {directory}")


def test_saved_results_carry_the_versions(load_tiny, tmp_path):
    from interp.lens import LensResult

    out = _saved_lens(load_tiny, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = LensResult.load(out)
    assert dict(loaded.provenance.versions) == library_versions()


def test_loading_a_result_from_other_versions_warns_once_naming_them(load_tiny, tmp_path, monkeypatch):
    from interp.lens import LensResult

    monkeypatch.setattr(provenance, "_WARNED_VERSION_DIFFERENCES", set())
    out = _saved_lens(load_tiny, tmp_path)
    _rewrite_versions(out, transformers="5.23.0", torch="2.9.1")
    with pytest.warns(UserWarning) as caught:
        LensResult.load(out)
        LensResult.load(out)
    messages = [str(w.message) for w in caught if "made under" in str(w.message)]
    assert len(messages) == 1, messages
    installed = library_versions()
    assert f"transformers 5.23.0 (installed: {installed['transformers']})" in messages[0]
    assert f"torch 2.9.1 (installed: {installed['torch']})" in messages[0]
    assert "transformer_lens" not in messages[0]


def test_results_saved_before_versions_were_recorded_load_quietly():
    data = Provenance("m", "h").to_dict()
    del data["versions"], data["workarounds"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = Provenance.from_dict(data)
    assert dict(loaded.versions) == {} and loaded.workarounds == ()


def test_a_store_records_the_versions(load_tiny, tmp_path, monkeypatch):
    from interp.store import ActivationStore, cache_activations

    monkeypatch.setattr(provenance, "_WARNED_VERSION_DIFFERENCES", set())
    store = cache_activations(load_tiny("gpt2"), ["a cat sat", "the answer is"], hooks=["resid_post"], positions="last", out=tmp_path / "store")
    assert dict(store.provenance.versions) == library_versions()
    manifest_path = tmp_path / "store" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["versions"]["transformer_lens"] = "4.2.0"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"transformer_lens 4\.2\.0 \(installed: "):
        ActivationStore.open(tmp_path / "store")
