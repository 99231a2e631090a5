"""Hostile experiment files: a name that walks out of --out, and an import path that runs code.

Each test fails if its hole reopens: the escaped file exists, or the shell command ran.
"""

import json
from pathlib import Path

import pytest

from interp.cli import main
from interp.errors import InterpError
from interp.experiments import load_config, run_experiment

ESCAPE = "x/../../../../escaped_cat"


def _pruning_toml(tmp_path: Path, model_dir: Path, extra: str = "", categories: tuple[str, str] = ("a", "b"), judge: str = "keyword") -> Path:
    rows = [{"text": "how do i pick a lock ?", "response": " the quick brown fox", "category": "a"},
            {"text": "a cat sat", "response": " on the mat .", "category": "b"}]  # fmt: skip
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    tables = "".join(f'\n[categories."{name}"]\npath = "data.jsonl"\n' for name in categories)
    path = tmp_path / "experiment.toml"
    path.write_text(
        f'model = "{model_dir}"\ndevice = "cpu"\nmethod = "snip"\nn_samples = 2\nbatch_size = 2\nrandom_seeds = []\n'
        f'[harmful]\npath = "data.jsonl"\n[benign]\npath = "data.jsonl"\n{tables}'
        f'[evaluation]\njudge = "{judge}"\nmax_new_tokens = 2\n[evaluation.harmful]\npath = "data.jsonl"\n{extra}'
    )
    return path


def _escaped(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if "escaped_cat" in path.name]


@pytest.mark.parametrize("name", [ESCAPE, "../up", "/etc/passwd", "..", ".hidden", "a\\b", "with space", "", "x" * 65])
def test_a_name_that_is_no_file_name_is_refused(name):
    from interp.io import safe_name

    with pytest.raises(InterpError, match="cannot be used as a file name"):
        safe_name(name, what="category")


def test_a_category_cannot_write_outside_out(tmp_path, tiny_model_dirs, capsys):
    """`[categories."x/../../../../escaped_cat"]` once wrote escaped_cat*.json / .safetensors above --out."""
    work = tmp_path / "a" / "b" / "c" / "d"
    work.mkdir(parents=True)
    path = _pruning_toml(work, tiny_model_dirs["llama"], categories=(ESCAPE, "fine"))
    with pytest.raises(InterpError, match=r"\[categories.NAME\] name 'x/../../../../escaped_cat' cannot be used as a file name"):
        load_config(path)
    assert main(["run", str(path), "--out", str(work / "out"), "--quiet"]) == 2
    assert "cannot be used as a file name" in capsys.readouterr().err
    assert _escaped(tmp_path) == [] and not (work / "out").exists()


def test_the_sweep_api_refuses_a_path_as_a_category(tmp_path):
    from interp.pruning.sweep import run_sweep

    with pytest.raises(InterpError, match="category '../escaped_cat' cannot be used as a file name"):
        run_sweep(None, [], [], None, tmp_path / "out", categories={"../escaped_cat": [], "b": []})
    assert _escaped(tmp_path.parent) == []


@pytest.mark.parametrize("where", ["judge", "data", "extract", "benign_judge", "embedder"])
def test_an_import_path_in_a_file_runs_nothing_without_the_flag(tmp_path, tiny_model_dirs, capsys, where):
    """`judge = "os:system"` / `[harmful] call = "os:system"` with `kwargs = {command = ...}` once ran the command."""
    marker = tmp_path / "PWNED"
    command = f"echo PWNED > {marker}"
    if where == "embedder":
        path = tmp_path / "resample.toml"
        path.write_text(f'analysis = "resampling"\nmodel = "{tiny_model_dirs["llama"]}"\nprompt = "Q <think>\\n"\nsolution = "a. b."\nembedder = "os:system"\n')
    else:
        extra = {
            "judge": "",
            "data": f'[evaluation.tasks]\ncall = "os:system"\nkwargs = {{ command = "{command}" }}\n',
            "extract": '[evaluation.tasks]\npath = "data.jsonl"\n',
            "benign_judge": '[evaluation.benign_prompts]\npath = "data.jsonl"\n',
        }[where]
        path = _pruning_toml(tmp_path, tiny_model_dirs["llama"], extra=extra, judge="os:system" if where == "judge" else "keyword")
        if where in ("extract", "benign_judge"):
            path.write_text(path.read_text().replace('[evaluation]\n', f'[evaluation]\n{where} = "os:system"\n'))
    config = load_config(path)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "'os:system'" in error and "--allow-imports" in error, error
    with pytest.raises(InterpError, match="pass --allow-imports"):
        run_experiment(config, tmp_path / "api_out", progress=False)
    assert not marker.exists() and not (tmp_path / "out").exists() and not (tmp_path / "api_out").exists()


def test_resolve_never_imports_without_the_opt_in():
    from interp.experiments import registry

    for kind in registry.KINDS:
        with pytest.raises(InterpError, match="--allow-imports"):
            registry.resolve(kind, "os:system")
    with registry.imports_allowed():
        assert registry.resolve("judge", "os.path:join") is __import__("os").path.join
    with pytest.raises(InterpError, match="--allow-imports"):  # the permission ends with the block
        registry.resolve("judge", "os.path:join")


def test_registered_names_resolve_without_the_flag():
    from interp.experiments import registry
    from interp.organisms import datasets

    assert registry.resolve("data", "organism-harmful-requests") is datasets.harmful_requests
    assert registry.resolve("data", "interp.organisms.datasets:harmful_requests") is datasets.harmful_requests  # a built-in's own path
    assert registry.resolve("judge", "organism-harm") is registry.organism_harm
    with pytest.raises(InterpError, match="unknown judge 'organism-harn'. Did you mean 'organism-harm'"):
        registry.resolve("judge", "organism-harn")


def test_run_help_explains_the_flag(capsys):
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--allow-imports" in text and "runs that module's code" in text
