"""The store's overview: ``interp.mechanisms.norms.site_norms(store)``, a result drawn by ``interp.plots`` (the store draws nothing)."""

import ast
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from conftest import PROMPTS
from interp.errors import InterpError
from interp.plots import activation_norms_figure
from interp.mechanisms.norms import SiteNorms, site_norms
from interp.store import cache_activations

NORM_TOLERANCE = 1e-5  # float32 norms of the same stored tensors


def test_norms_are_the_stored_activations_norms_and_the_figure_shows_them(load_tiny, tmp_path):
    model = load_tiny("llama")
    store = cache_activations(model, PROMPTS[:3], hooks=["embed", "resid_post"], out=tmp_path / "acts", progress=False)
    norms = site_norms(store)
    assert norms.kind == "resid_post" and norms.layers == tuple(range(model.cfg.n_layers)), (norms.kind, norms.layers)
    assert norms.prompts == tuple(PROMPTS[:3]) and norms.values.shape == (3, model.cfg.n_layers)
    for j, layer in enumerate(norms.layers):
        expected = store[f"blocks.{layer}.hook_resid_post"].float().norm(dim=-1).numpy()
        assert abs(norms.values[:, j] - expected).max() <= NORM_TOLERANCE, f"layer {layer}"

    figure = norms.figure()
    assert figure.to_json() == activation_norms_figure(**{key: value for key, value in asdict(norms).items() if key != 'provenance'}).to_json()
    heatmap = figure.data[0]
    assert torch.allclose(torch.tensor(heatmap.z), torch.tensor(norms.values))
    assert list(heatmap.x) == [str(layer) for layer in norms.layers]
    assert [label.split(": ", 1)[0] for label in heatmap.y] == ["0", "1", "2"], heatmap.y
    assert all(f"prompt {i}: {prompt}<br>" in heatmap.text[i][0] for i, prompt in enumerate(PROMPTS[:3])), heatmap.text
    assert figure.layout.title.text == f"‖resid_post‖ at positions=last — {store.model_id}"


def test_norms_of_a_kind_not_cached_name_the_cached_kinds(load_tiny, tmp_path):
    store = cache_activations(load_tiny("llama"), PROMPTS[:2], hooks=["resid_post"], out=tmp_path / "acts", progress=False)
    with pytest.raises(InterpError, match=r"holds no per-layer mlp_out activations \(per-layer kinds cached: resid_post\)"):
        site_norms(store, "mlp_out")
    with pytest.raises(InterpError, match=r"SiteNorms.values has shape \(2, 1\); expected \(prompt, layer\) = \(2, 2\)"):
        SiteNorms("resid_post", (0, 1), ("a", "b"), site_norms(store).values[:, :1], "last", "m")


@pytest.mark.parametrize("module", sorted(path.name for path in (Path(__file__).resolve().parents[1] / "interp" / "store").glob("*.py")))
def test_the_store_draws_nothing(module):
    source = (Path(__file__).resolve().parents[1] / "interp" / "store" / module).read_text()
    imported = {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    imported |= {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"plots", "report", "interp.plots", "interp.report", "plotly"}, imported
