"""One experiment per directory: another analysis is refused in a directory that holds work, and a run that stopped
before doing any work (its model did not load) does not lock its directory against the corrected rerun."""

import json
from pathlib import Path

import pytest

from interp.cli import main
from interp.errors import InterpError
from interp.experiments import load_config, run_experiment

from test_experiments import _toml, data_dir  # noqa: F401 (data_dir: the fixture)


def test_a_lens_run_into_a_probes_directory_is_refused_and_changes_nothing(data_dir, tiny_model_dirs, capsys):
    model = f'model = "{tiny_model_dirs["llama"]}"\ndevice = "cpu"\n'
    cache = _toml(data_dir, "cache", f'analysis = "cache"\n{model}hooks = ["resid_post"]\nbatch_size = 2\n[prompts]\npath = "prompts.jsonl"\n')
    assert main(["run", str(cache), "--out", str(data_dir / "acts"), "--quiet"]) == 0
    probes = _toml(data_dir, "probes", 'analysis = "probes"\nstore = "acts/store"\ncv = 2\nholdout = 0.0\n')
    out = data_dir / "probes_out"
    run_experiment(load_config(probes), out, progress=False)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    lens = _toml(data_dir, "lens", f'analysis = "lens"\n{model}top_k = 3\n[prompts]\npath = "prompts.jsonl"\nlimit = 2\n')
    assert main(["run", str(lens), "--out", str(out), "--quiet"]) == 2
    assert "holds a probes experiment; a lens experiment needs its own directory" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_the_same_analysis_with_other_settings_is_computed_again_in_place(data_dir, tiny_model_dirs):
    model = f'model = "{tiny_model_dirs["llama"]}"\ndevice = "cpu"\n'
    out = data_dir / "lens_out"
    for top_k in (3, 2):
        lens = _toml(data_dir, "lens", f'analysis = "lens"\n{model}top_k = {top_k}\n[prompts]\npath = "prompts.jsonl"\nlimit = 2\n')
        result = run_experiment(load_config(lens), out, progress=False)
        assert result.top_ids.shape[-1] == top_k
        assert json.loads((out / "config.json").read_text())["top_k"] == top_k


def test_a_run_whose_model_did_not_load_leaves_its_directory_to_the_corrected_rerun(data_dir, tiny_model_dirs, capsys):
    out = data_dir / "acts"
    missing = data_dir / "no-such-model"
    for model, code in ((missing, 2), (tiny_model_dirs["llama"], 0)):
        cache = _toml(data_dir, "cache", f'analysis = "cache"\nmodel = "{model}"\ndevice = "cpu"\nhooks = ["resid_post"]\n[prompts]\npath = "prompts.jsonl"\n')
        assert main(["run", str(cache), "--out", str(out), "--quiet"]) == code
    assert json.loads((out / "config.json").read_text())["model"] == str(tiny_model_dirs["llama"])
    assert (out / "store" / "manifest.json").exists()


def test_a_damaged_config_json_is_one_line(data_dir, tiny_model_dirs):
    out = data_dir / "acts"
    out.mkdir()
    (out / "config.json").write_text("[" * 100_000)
    cache = _toml(data_dir, "cache", f'analysis = "cache"\nmodel = "{tiny_model_dirs["llama"]}"\ndevice = "cpu"\n[prompts]\npath = "prompts.jsonl"\n')
    with pytest.raises(InterpError, match=r"config.json is not readable JSON \(RecursionError\)"):
        run_experiment(load_config(cache), out, progress=False)
