"""Writes the tutorial notebooks of this folder, one per module, without outputs.

    python notebooks/build_notebooks.py            # rewrite every notebook
    python notebooks/build_notebooks.py 03 06      # only the notebooks whose names start so

The notebooks are generated from the cell sources in ``nb01_logit_lens.py`` ... ``nb07_attribution_graph.py``
(one module per notebook; ``builder.py`` writes them) so that they stay reviewable as plain text; edit a
notebook there and rerun this script (an edit made in Jupyter is overwritten). Every notebook runs
offline on the bundled model organism in about a minute on a CPU, writes only under ``out/`` of its
working directory, and ends with a cell that asserts its key numbers; ``tests/test_notebooks.py``
executes them.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the cell modules and builder.py sit beside this file

from builder import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
