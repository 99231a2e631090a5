"""The one path rule: every path an experiment writes to besides --out lies inside --out, unless the experiment
allows otherwise (allow_outside = true in the TOML file, interp run --allow-outside); checked before any work,
field by field. An absolute [completions] directory once wrote the pruning run's completions elsewhere silently."""

import dataclasses
import re
import typing

import pytest

from interp.cli import main
from interp.errors import InterpError
from interp.experiments import run_experiment
from interp.experiments.table import ANALYSES, parse_config

# (analysis, key) of every field marked output=True, and a config table that sets it to PATH
OUTPUT_FIELDS = {
    ("pruning", "[completions] directory"): lambda path: {
        "analysis": "pruning", "harmful": {"path": "h.jsonl"}, "benign": {"path": "b.jsonl"}, "completions": {"directory": path},
        "evaluation": {"harmful": {"path": "h.jsonl"}},
    },
    ("directions", "orthogonalize_out"): lambda path: {
        "analysis": "directions", "harmful": {"path": "h.txt"}, "benign": {"path": "b.txt"}, "orthogonalize_out": path,
    },
}  # fmt: skip


def _output_fields(cls, where: str = "") -> list[str]:
    found = []
    for spec in dataclasses.fields(cls):
        key = f"[{where}] {spec.name}" if where else spec.name
        if spec.metadata.get("output"):
            found.append(key)
        for kind in (spec.type, *typing.get_args(spec.type)):
            if dataclasses.is_dataclass(kind):
                found.extend(_output_fields(kind, spec.name))
    return found


def test_every_output_field_is_known_to_this_test():
    marked = {(analysis, key) for analysis, cls in ANALYSES.items() for key in _output_fields(cls)}
    assert marked == set(OUTPUT_FIELDS)


@pytest.mark.parametrize(("analysis", "key"), sorted(OUTPUT_FIELDS))
@pytest.mark.parametrize("where", ["absolute", "dot-dot"])
def test_an_output_outside_out_is_refused_before_any_work(analysis, key, where, tmp_path):
    elsewhere = str(tmp_path / "elsewhere") if where == "absolute" else "../elsewhere"
    config = parse_config(OUTPUT_FIELDS[analysis, key](elsewhere), base=tmp_path)
    assert config.output_paths() == {key: config.output_paths()[key]}
    with pytest.raises(InterpError, match=rf"{re.escape(key)} .* leads outside --out .*allow_outside = true"):
        run_experiment(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(("analysis", "key"), sorted(OUTPUT_FIELDS))
def test_allow_outside_lets_it_through_and_inside_needs_nothing(analysis, key, tmp_path):
    outside = parse_config({**OUTPUT_FIELDS[analysis, key](str(tmp_path / "elsewhere")), "allow_outside": True}, base=tmp_path)
    outside.check_outputs(tmp_path / "out")  # no error
    assert "allow_outside" not in outside.to_dict()  # a permission, not a setting: config.json is the same
    if analysis == "pruning":  # a path inside --out needs no permission
        parse_config(OUTPUT_FIELDS[analysis, key]("runs_completions"), base=tmp_path).check_outputs(tmp_path / "out")


def test_interp_run_has_the_flag_twin(tmp_path, capsys):
    toml = tmp_path / "experiment.toml"
    toml.write_text('analysis = "pruning"\n[harmful]\npath = "h.jsonl"\n[benign]\npath = "b.jsonl"\n[evaluation.harmful]\npath = "h.jsonl"\n[completions]\ndirectory = "/tmp/elsewhere"\n')
    assert main(["run", str(toml), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "[completions] directory '/tmp/elsewhere' leads outside --out" in capsys.readouterr().err
