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
