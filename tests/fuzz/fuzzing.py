"""What every fuzz test shares: bounded, reproducible settings and strategies that damage files.

Each fuzz test hands a loader inputs built from a valid file (bytes flipped, cut or inserted; JSON
values replaced, removed or added) and random documents, and checks that the loader either reads
them or raises ``InterpError``: any other exception escaping is a bug at the loader's boundary.
"""

import json
from typing import Any, Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from interp.errors import InterpError

# derandomize: the same examples on every run (CI is reproducible); database=None: nothing written to the tree
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

# text that may hold lone surrogates ("\ud800" in JSON is legal, but no UTF-8 file can hold it as a character)
any_text = st.text(st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=12)
# JSON values, small but of every kind (lone surrogates, NaN and huge numbers included)
json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | any_text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)


def only_interp_errors(load: Callable[[], Any]) -> Any:
    """``load()``'s value, or None if it raised InterpError; any other exception propagates (the test fails)."""
    try:
        return load()
    except InterpError as error:
        message = str(error)
        assert message and "\n" not in message.strip(), f"an InterpError message must be one line: {message!r}"
        return None


@st.composite
def damaged_bytes(draw, original: bytes) -> bytes:
    """``original`` with a few bytes flipped, cut, duplicated or inserted, or cut short."""
    data = bytearray(original)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(min_value=1, max_value=16))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "truncate":
            del data[at:]
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(min_value=1, max_value=64))]
    return bytes(data)


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a JSON value, the root included."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += json_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += json_paths(item, prefix + (index,))
    return paths


@st.composite
def damaged_json(draw, original: Any) -> Any:
    """A deep copy of ``original`` with a few values replaced by random JSON, removed, or keys added."""
    value = json.loads(json.dumps(original))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = json_paths(value)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "remove", "add"]))
        if not path:
            if kind == "replace":
                value = draw(json_values)
            continue
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        if kind == "replace":
            parent[path[-1]] = draw(json_values | json_scalars)
        elif kind == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(any_text)] = draw(json_values)
        else:
            parent.insert(path[-1], draw(json_values))
    return value
