"""The README's Python quickstart runs as written (on the bundled organism)."""

import os
import re
from pathlib import Path

import plotly.graph_objects as go
import pytest

from interp.organisms import available_organisms

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif("default" not in available_organisms(), reason="the bundled organism is missing")
def test_readme_python_quickstart_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(go.Figure, "show", lambda self, *args, **kwargs: None)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert (tmp_path / "acts" / "manifest.json").exists()
    assert namespace["probes"].best_layer is not None
    assert len(namespace["patched"].top(3)) == 3


@pytest.mark.skipif("default" not in available_organisms(), reason="the bundled organism is missing")
def test_readme_resample_command_runs_and_its_answers_are_graded(tmp_path):
    """The README's `interp resample` line works as written (fewer rollouts): the shipped problem, the organism's answer pattern."""
    import json
    import shlex

    from interp.cli import main

    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("interp resample --model organism"))
    argv = shlex.split(line.split("&&")[0])[1:]
    argv[argv.index("--n") + 1], argv[argv.index("--out") + 1] = "4", str(tmp_path / "run")
    argv[argv.index("--problem") + 1] = str(ROOT / argv[argv.index("--problem") + 1])
    assert main(argv + ["--no-forced"]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    answered = sum(record["answer"] is not None for record in records)
    assert records and answered >= 0.75 * len(records), f"{answered} of {len(records)} rollouts gave an answer the pattern reads"
