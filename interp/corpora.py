"""Text every user has offline: the running Python's own documentation and standard library (PSF licence), for
work that needs a corpus of real text without a download (training a sparse dictionary or a tuned lens).

Both are read in a fixed order (sorted paths), so one Python version gives one corpus; the top-level ``test``
package, folders named ``tests``, the ``idlelib`` / ``lib2to3`` / ``turtledemo`` packages and ``site-packages``
are left out (a package's own ``test`` subpackage, e.g. ``unittest/test``, is kept).

>>> texts = python_documentation()        # the pydoc topics, then every docstring over 100 characters
>>> len(texts) > 1000
True
"""

import ast
import sysconfig
from collections.abc import Iterator
from pathlib import Path

LEFT_OUT = ("test", "idlelib", "lib2to3", "site-packages", "turtledemo")


def standard_library_files() -> Iterator[Path]:
    """The standard library's modules, in a fixed order, without the packages the module docstring names."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] not in LEFT_OUT and "tests" not in parts:
            yield path


def python_documentation(min_chars: int = 100) -> list[str]:
    """The reference topics of ``pydoc_data``, then the docstrings (over ``min_chars`` characters) of the standard
    library's modules, classes and functions; each text once."""
    import pydoc_data.topics

    texts: dict[str, None] = dict.fromkeys(text for _, text in sorted(pydoc_data.topics.topics.items()))
    for path in standard_library_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring and len(docstring) > min_chars:
                    texts[docstring] = None
    return list(texts)


def python_source() -> list[str]:
    """The standard library's module sources, one text per file."""
    texts = []
    for path in standard_library_files():
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue
    return texts
