"""Every notebook in notebooks/ runs top to bottom offline on the bundled organism, and its key numbers are
what its text says: the last cell of each asserts them and prints CHECKS_PASSED, which the test requires
(a notebook whose numbers went wrong, 0% everywhere, fails instead of merely running)."""

from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CHECKS_PASSED = "CHECKS_PASSED"  # notebooks/builder.py: what each notebook's checks cell prints last


def _code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_there_is_a_notebook_per_module():
    names = {path.stem for path in NOTEBOOKS}
    for expected in ("01_logit_lens", "02_activation_patching", "03_harm_pruning", "04_linear_probes",
                     "05_cot_resampling", "06_pruning_vs_probes", "07_attribution_graph"):
        assert expected in names, f"notebooks/{expected}.ipynb is missing"


def test_the_notebooks_are_what_the_builder_writes(monkeypatch):
    """An edit made to a .ipynb and not to its cells module (or the other way round) is caught here."""
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.syspath_prepend(str(NOTEBOOK_DIR))
    import builder

    assert builder.CHECKS_PASSED == CHECKS_PASSED
    built = builder.notebooks()
    assert sorted(built) == [path.stem for path in NOTEBOOKS]
    for path in NOTEBOOKS:
        expected = nbformat.writes(builder.build(path.stem, built[path.stem]))
        assert path.read_text().rstrip("\n") == expected.rstrip("\n"), f"{path.name} is out of date: run python notebooks/build_notebooks.py {path.stem[:2]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_every_notebook_ends_by_checking_its_key_numbers(path):
    nbformat = pytest.importorskip("nbformat")
    last = _code_cells(nbformat.read(path, as_version=4))[-1].source
    assert last.count("assert ") >= 3, f"the last cell of {path.name} must assert the notebook's key numbers"
    assert last.rstrip().endswith(f"print({CHECKS_PASSED!r})"), f"the last cell of {path.name} must end by printing {CHECKS_PASSED}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_and_its_numbers_check_out(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from interp.organisms import available_organisms

    if "default" not in available_organisms():
        pytest.skip("the bundled organism is missing (assets/organisms/default)")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell and the failed assertion, on any error
    errors = [output for cell in _code_cells(notebook) for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, errors
    printed = "".join(output.get("text", "") for output in _code_cells(notebook)[-1].get("outputs", []) if output.get("output_type") == "stream")
    assert printed.rstrip().endswith(CHECKS_PASSED), f"{path.name}: the checks cell did not finish: {printed[-500:]!r}"
