"""The offline corpus: the running Python's documentation and source, the same texts on every call."""

import json

from interp.corpora import python_documentation, python_source, standard_library_files


def test_the_python_documentation_is_a_fixed_corpus_of_real_text():
    texts = python_documentation()
    assert texts == python_documentation()  # a fixed order: one Python, one corpus
    assert len(texts) == len(set(texts)) > 1000
    assert json.__doc__.strip() in texts  # a module docstring ("JSON (JavaScript Object Notation) ...")
    assert all(len(text) > 100 for text in texts[-100:])
    files = list(standard_library_files())
    assert not any(path.parts[-2] in ("test", "tests") and path.parts[-3].startswith("python3") for path in files)
    assert not any("tests" in path.parts or "site-packages" in path.parts or "idlelib" in path.parts for path in files)
    assert len(python_source()) == len(files)
