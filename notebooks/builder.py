"""What every notebook's cells share (the set-up cell, ``md`` / ``code``) and the writer of the .ipynb files.

Each notebook's cells live in their own module (``nb01_logit_lens.py`` ...: ``NAME`` and ``CELLS``);
``python notebooks/build_notebooks.py`` writes them. The last code cell of every notebook asserts
its key numbers and prints ``CHECKS_PASSED``; ``tests/test_notebooks.py`` executes each notebook and
requires that line, so a notebook whose numbers went wrong (0% everywhere) fails instead of passing.
"""

import importlib
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
MODULES = ("nb01_logit_lens", "nb02_activation_patching", "nb03_harm_pruning", "nb04_linear_probes",
           "nb05_cot_resampling", "nb06_pruning_vs_probes", "nb07_attribution_graph")  # fmt: skip
CHECKS_PASSED = "CHECKS_PASSED"  # the last line the checks cell prints

SETUP = '''\
from pathlib import Path

import torch

import interp
from interp.organisms import TRIGGER, datasets

# The organism is tiny (d_model 128): on a CPU one thread is fastest, since splitting such small
# matrices across threads costs more than it saves (several times slower on a busy machine).
torch.set_num_threads(1)
torch.manual_seed(0)
model = interp.load_model("organism")  # the bundled organism: offline, on the GPU if there is one
print(f"{model.cfg.n_layers} layers, {model.cfg.n_heads} heads, d_model {model.cfg.d_model}, "
      f"vocabulary {model.cfg.d_vocab}; backdoor trigger {TRIGGER!r}")
'''


def md(text: str) -> tuple[str, str]:
    return ("markdown", text.strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip("\n"))


def checks(text: str) -> tuple[str, str]:
    """The last cell of a notebook: assertions on its key numbers, then the line the notebook test requires."""
    return code(f"# Checks: the numbers this notebook's text describes (tests/test_notebooks.py runs every notebook).\n"
                f"{text.strip(chr(10))}\nprint({CHECKS_PASSED!r})")  # fmt: skip


def notebooks() -> dict[str, list[tuple[str, str]]]:
    """Notebook name -> its cells, in order."""
    found = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        found[module.NAME] = module.CELLS
    return found


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    notebook = new_notebook(metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })  # fmt: skip
    for index, (kind, source) in enumerate(cells):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell["id"] = f"{name[:2]}-{index:02d}"  # stable ids: a rebuild changes only what changed
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def main(argv: list[str]) -> None:
    """Write every notebook whose name starts with one of ``argv`` (all of them when it is empty)."""
    prefixes = argv or [""]
    for name, cells in notebooks().items():
        if any(name.startswith(prefix) for prefix in prefixes):
            path = HERE / f"{name}.ipynb"
            nbformat.write(build(name, cells), path)
            print(f"wrote {path.relative_to(HERE.parent)}")
