"""Every kind of saved result, edited one field at a time and with damaged safetensors headers: its loader reads
the file or refuses it with one line naming the file; ``figure()`` of whatever loads draws or refuses alike.

The edits are systematic, not sampled: for every JSON file a result writes, every key (top level and one
level down) is deleted or replaced by a value of each JSON type, an empty or huge one, and JSON nested
past any parser's depth; each file is cut short; each safetensors header gets a wrong length, dtype,
shape or offsets, or is cut. Any other exception is a traceback a user would see: the test fails
naming the kind, the file and the edit.
"""

import json
import struct
from pathlib import Path

import pytest

from interp.errors import InterpError
from interp.io import RESULT_FORMATS

from test_result_io import LOADERS, _saved, probe  # noqa: F401 (probe: the fixture)

REPLACEMENTS = {"null": None, "zero": 0, "negative": -1, "huge": 1e308, "text": "x", "true": True, "list": [], "table": {},
                "list of text": ["x"], "nested": [[[[[]]]]]}  # fmt: skip
DEEP = "[" * 100_000 + "]" * 100_000


def _key_paths(data, depth: int = 2) -> list[tuple]:
    paths = []
    if isinstance(data, dict) and depth:
        for key, value in data.items():
            paths.append((key,))
            paths.extend((key, *rest) for rest in _key_paths(value, depth - 1))
    elif isinstance(data, list) and depth and data:
        paths.append((0,))
        paths.extend((0, *rest) for rest in _key_paths(data[0], depth - 1))
    return paths


def _edited(data, path: tuple, value, delete: bool):
    data = json.loads(json.dumps(data))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


def _json_edits(original: str):
    """(name, new text) for every single-field edit of a JSON document, and a cut and a deep one."""
    data = json.loads(original)
    yield "cut in half", original[: len(original) // 2]
    yield "nested 100,000 deep", DEEP
    yield "a list, not a table", "[]"
    for path in _key_paths(data):
        where = ".".join(str(key) for key in path)
        yield f"{where} deleted", json.dumps(_edited(data, path, None, delete=True))
        for name, value in REPLACEMENTS.items():
            yield f"{where} = {name}", json.dumps(_edited(data, path, value, delete=False))
        yield f"{where} = deep", json.dumps(_edited(data, path, None, delete=False)).replace("null", DEEP, 1)


def _header_edits(original: bytes):
    """(name, new bytes) for damage to a safetensors file's header."""
    (length,) = struct.unpack("<Q", original[:8])
    header = json.loads(original[8 : 8 + length])
    body = original[8 + length :]

    def rebuilt(new_header) -> bytes:
        text = json.dumps(new_header).encode()
        return struct.pack("<Q", len(text)) + text + body

    yield "header length 2^62", struct.pack("<Q", 2**62) + original[8:]
    yield "header length 0", struct.pack("<Q", 0) + original[8:]
    yield "cut inside the header", original[: 8 + length // 2]
    yield "header not JSON", struct.pack("<Q", length) + b"{" * length + body
    yield "body cut", original[: 8 + length + len(body) // 2]
    tensors = [key for key in header if key != "__metadata__"]
    for key in tensors[:3]:
        for field, value in (("dtype", "F64"), ("dtype", "Q9"), ("shape", [2**31, 2**31]), ("shape", [-1]),
                             ("data_offsets", [0, 2**40]), ("data_offsets", [5, 1])):  # fmt: skip
            yield f"{key}.{field} = {value}", rebuilt({**header, key: {**header[key], field: value}})
        yield f"{key} deleted", rebuilt({name: entry for name, entry in header.items() if name != key})
    if "__metadata__" in header:
        yield "metadata not text", rebuilt({**header, "__metadata__": {"format": 3}})
        yield "metadata dropped", rebuilt({name: entry for name, entry in header.items() if name != "__metadata__"})


def _attempt(load, directory: Path) -> str | None:
    """None if ``load`` read the result (and its figure drew) or refused it in one line; else the traceback's gist."""
    try:
        result = load(directory)
    except InterpError as error:
        message = str(error).strip()
        return None if message and "\n" not in message else f"InterpError of {len(message.splitlines())} lines"
    except Exception as error:  # noqa: BLE001 (what this test looks for)
        return f"load: {type(error).__name__}: {str(error)[:120]}"
    if not hasattr(result, "figure"):  # a saved artifact, not an analysis' result (a direction vector)
        return None
    try:
        result.figure()
    except InterpError:
        return None
    except Exception as error:  # noqa: BLE001
        return f"figure(): {type(error).__name__}: {str(error)[:120]}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(RESULT_FORMATS))
def test_every_edit_of_a_saved_result_is_read_or_refused_in_one_line(kind, tmp_path, probe):
    _, written = _saved(kind, tmp_path / "pristine", probe)
    target = Path(written)  # a directory, or the one file of a single-file kind
    root = target if target.is_dir() else target.parent
    load = LOADERS[kind]
    files = (
        sorted(path for path in root.rglob("*") if path.suffix in (".json", ".safetensors")) if target.is_dir() else [target]
    )
    assert files, f"{kind} wrote no JSON or safetensors file"
    failures, tried = [], 0
    for path in files:
        original = path.read_bytes()
        edits = _json_edits(original.decode()) if path.suffix == ".json" else _header_edits(original)
        for name, new in edits:
            path.write_bytes(new.encode() if isinstance(new, str) else new)
            tried += 1
            problem = _attempt(load, target)
            if problem:
                failures.append(f"{path.relative_to(root)}: {name}: {problem}")
        path.write_bytes(original)
    assert _attempt(load, target) is None  # the pristine files still load
    print(f"{kind}: {tried} edits, {len(failures)} tracebacks")  # the counts, with pytest -s
    assert not failures, f"{kind}: {len(failures)} of {tried} edits end in a traceback:\n" + "\n".join(failures[:25])
