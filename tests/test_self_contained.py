"""The repository is self-contained: no test, experiment file, experiment script, notebook source or
benchmark names a path outside it (a folder beside the clone, ``__file__``'s ancestors above the root).

The data they read lies under ``assets/``, third-party data with its licence and a SOURCES.md. This
file is not scanned itself: it holds the patterns and the planted offenders.
"""

import os
import re
import tomllib
from pathlib import Path, PurePosixPath

from conftest import ADVBENCH, BLACKMAIL, LLAMA2_REFUSALS, THOUGHT_ANCHORS

REPOSITORY = Path(__file__).resolve().parents[1]
SCANNED = ("tests/**/*.py", "circuits/**/*.py", "circuits/**/*.toml", "circuits/**/*.md", "notebooks/*.py", "bench/*.py", "README.md")
SHARED = re.compile(r"""\.\./shared\b|/work/shared\b|(?<![\w/])shared/[\w.-]|["']shared["']""")  # the folder beside the clone, in any spelling
ROOT_PARENT = re.compile(r"\b(?:ROOT|REPO|REPOSITORY)\.parent\b")  # the folder that holds the repository
FILE_ANCESTOR = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent\b)*)(?:\.parents\[(\d+)\])?")
UP_PATH = re.compile(r"""(?<![\w./~-])((?:\.\./)+[^\s"'`,)\]]*)""")  # ../x in a TOML file: relative to that file


def outside_references(root: Path = REPOSITORY) -> list[str]:
    """One line ``FILE:LINE: what`` per place in the scanned files under ``root`` that names a path outside ``root``."""
    itself = Path(__file__).resolve()
    found = []
    for pattern in SCANNED:
        for path in sorted(root.glob(pattern)):
            if path.resolve() != itself:
                found += _offences(PurePosixPath(path.relative_to(root).as_posix()), path.read_text(encoding="utf-8"))
    return found


def _offences(relative: PurePosixPath, text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{relative}:{number}"
        found += [f"{where}: names the data folder beside the repository ({m.group(0)})" for m in SHARED.finditer(line)]
        if relative.suffix == ".py":
            found += [f"{where}: {m.group(0)} is the folder above the repository" for m in ROOT_PARENT.finditer(line)]
            for m in FILE_ANCESTOR.finditer(line):
                up = m.group(1).count(".parent") + (int(m.group(2)) + 1 if m.group(2) else 0)
                if up > len(relative.parts):  # parents[len(parts) - 1] is the root
                    found.append(f"{where}: {m.group(0)} is {up} folders up from {relative}, above the repository")
        if relative.suffix == ".toml":
            found += [f"{where}: {m.group(1)} leaves the repository" for m in UP_PATH.finditer(line) if _escapes(relative.parent, m.group(1))]
    if relative.suffix == ".toml":
        for key, value in _strings(tomllib.loads(text)):
            if value.startswith(("/", "~")):
                found.append(f"{relative}: {key} = {value!r} is a path outside the repository")
    return found


def _escapes(folder: PurePosixPath, path: str) -> bool:
    """Whether ``path``, relative to ``folder`` (relative to the root), leads above the root."""
    return os.path.normpath(folder / path).split(os.sep)[0] == ".."


def _strings(table, prefix: str = ""):
    """``(dotted key, value)`` for every string in a parsed TOML table, in arrays too."""
    items = table.items() if isinstance(table, dict) else ((str(i), v) for i, v in enumerate(table))
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, str):
            yield name, value
        elif isinstance(value, (dict, list)):
            yield from _strings(value, name)


def test_nothing_names_a_path_outside_the_repository():
    found = outside_references()
    assert not found, "\n".join(found)


def test_the_data_the_tests_read_is_in_the_repository():
    for path in (ADVBENCH, LLAMA2_REFUSALS, BLACKMAIL, THOUGHT_ANCHORS / "website_math"):
        assert path.exists() and REPOSITORY in path.resolve().parents, path
    for folder in (ADVBENCH.parent, THOUGHT_ANCHORS):
        assert (folder / "SOURCES.md").is_file() and list(folder.glob("LICENSE*")), f"{folder}: licence and SOURCES.md"


def test_planted_offenders_are_found(tmp_path):
    """Each kind of escape, planted in a copy of the layout, is reported with its file and line; paths inside are not."""
    planted = {
        "tests/a/test_x.py": 'DATA = Path(__file__).resolve().parents[3] / "data"\n'  # tests/a/test_x.py: parents[2] is the root
                             'OK = Path(__file__).resolve().parents[2] / "assets"\n'
                             'UP = Path(__file__).parent.parent.parent.parent / "x"\n',
        "tests/test_y.py": 'X = Path("/work/shared/data/x.txt")\nY = ROOT / "x"\n',
        "circuits/x/run.py": 'ADVBENCH = ROOT.parent / "shared" / "data"\n'  # circuits/x/run.py: parents[2] is the root
                             'ROOT = Path(__file__).resolve().parents[2]\nUP = Path(__file__).resolve().parents[3] / "x"\n',
        "circuits/x/x.toml": '# --set mask=../../runs/m.safetensors\n[harmful]\npath = "../../../data/advbench.txt"\n[benign]\npath = "/data/benign.csv"\n'
                             'out = "../../runs/x"\n',
        "circuits/x/README.md": "AdvBench: `../shared/data/advbench.txt`\nThe weights (`/work/shared/MODELS.md`).\n"
                                "a shared disk: --out /shared/acts\n",  # a user's path in an example: not ours
    }  # fmt: skip
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = outside_references(tmp_path)
    expected = [
        "circuits/x/run.py:1: ROOT.parent is the folder above the repository",
        "circuits/x/run.py:1: names the data folder beside the repository",
        "circuits/x/run.py:3: __file__).resolve().parents[3] is 4 folders up",
        "circuits/x/x.toml:3: ../../../data/advbench.txt leaves the repository",
        "circuits/x/x.toml: benign.path = '/data/benign.csv' is a path outside the repository",
        "circuits/x/README.md:1: names the data folder beside the repository",
        "circuits/x/README.md:2: names the data folder beside the repository",
        "tests/a/test_x.py:1: __file__).resolve().parents[3] is 4 folders up",
        "tests/a/test_x.py:3: __file__).parent.parent.parent.parent is 4 folders up",
        "tests/test_y.py:1: names the data folder beside the repository",
    ]
    for start in expected:
        assert sum(line.startswith(start) for line in found) == 1, (start, found)
    assert len(found) == len(expected), found
