"""Every notebook in notebooks/ runs top to bottom offline on the bundled organism."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook_per_module():
    names = {path.stem for path in NOTEBOOKS}
    for expected in ("01_logit_lens", "02_activation_patching", "03_harm_pruning", "04_linear_probes",
                     "05_cot_resampling", "06_pruning_vs_probes"):
        assert expected in names, f"notebooks/{expected}.ipynb is missing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_without_errors(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from interp.organisms import available_organisms

    if "default" not in available_organisms():
        pytest.skip("the bundled organism is missing (assets/organisms/default)")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, errors
