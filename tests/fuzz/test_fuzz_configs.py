"""Fuzz the experiment-config reader (``interp run FILE.toml``): damaged TOML files, random tables of the
known keys and random ``--set`` overrides must give a config or InterpError; nothing else may escape."""

import collections.abc
import dataclasses
import tempfile
import typing
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st

from interp.experiments import ANALYSES, load_config, parse_config, type_options

from fuzzing import FUZZ, any_text, damaged_bytes, json_values, only_interp_errors

CIRCUITS = Path(__file__).resolve().parents[2] / "circuits"
EXAMPLES = sorted(CIRCUITS.glob("*/*.toml"))
SMALL = [  # one small file per analysis
    b'analysis = "cache"\nhooks = ["resid_post"]\n[prompts]\npath = "p.jsonl"\n',
    b'analysis = "lens"\ntargets = " sure"\n[prompts]\npath = "p.jsonl"\nlimit = 4\n',
    b'analysis = "patching"\nmetric = "logit_diff"\nanswer = " mary"\nwrong = " john"\n[clean]\npath = "c.jsonl"\n[corrupt]\npath = "d.jsonl"\n',
    b'analysis = "probes"\nstore = "store"\nlayers = [0, 1]\n',
    b'analysis = "resampling"\nprompt = "Q: 2 + 3? <think>\\n"\nn = 4\n',
]
TOML_FILES = [path.read_bytes() for path in EXAMPLES] + SMALL
# values TOML can spell (no null), plus what the fields expect
toml_scalars = st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats() | any_text
TYPED = {str: any_text | st.sampled_from(["last", "all", "activation", "logit_diff", "float32", "resid_post", "p.jsonl", "keyword"]),
         int: st.integers(min_value=-3, max_value=2**64) | st.integers(0, 8), float: st.floats(), bool: st.booleans(), typing.Any: st.integers()}  # fmt: skip
PATHS = st.sampled_from(["p.jsonl", "/data/p.jsonl", "../p.csv", "p\x00.jsonl", "", "~/p.txt"])  # for the keys that hold paths
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3), max_leaves=8)


def value_of(kind, depth: int) -> st.SearchStrategy:
    """Values of the field type ``kind`` (random, but of the right type), or now and then any TOML value."""
    options = []
    for option in type_options(kind):
        if dataclasses.is_dataclass(option):
            options.append(table_of(option, depth + 1) if depth < 2 else st.just({}))
        elif typing.get_origin(option) is tuple:
            options.append(st.lists(value_of(typing.get_args(option)[0], depth), max_size=3))
        elif typing.get_origin(option) is collections.abc.Mapping:
            options.append(st.dictionaries(any_text, value_of(typing.get_args(option)[1], depth) if depth < 2 else toml_scalars, max_size=2))
        else:
            options.append(TYPED.get(option, toml_values))
    return st.one_of(*options, *options, *options, toml_values)  # now and then a value of the wrong type


def table_of(cls: type, depth: int = 0) -> st.SearchStrategy:
    """Tables of ``cls``'s keys (each optional) with values of their types; nested config tables recursively."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = {item.name for item in fields if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING}
    if {"path", "call"} <= {item.name for item in fields}:  # a data set: most name a file (exactly one of the two is valid)
        required.add("path")
    values = {item.name: PATHS | value_of(hints[item.name], depth) if item.metadata.get("path") else value_of(hints[item.name], depth) for item in fields}
    return st.fixed_dictionaries({name: values[name] for name in sorted(required)}, optional={name: values[name] for name in values if name not in required})


configs = st.sampled_from(sorted(ANALYSES)).flatmap(lambda name: table_of(ANALYSES[name]).map(lambda table: {"analysis": name, **table}))


def read_config(text: bytes, overrides: tuple[str, ...] = ()) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "experiment.toml"
        path.write_bytes(text)
        config = only_interp_errors(lambda: load_config(path, overrides))
        event("read" if config is not None else "refused")
        if config is not None:
            assert config.to_dict()["analysis"] in ANALYSES


def test_the_example_configs_read(tmp_path):
    for number, text in enumerate(TOML_FILES):
        (tmp_path / f"{number}.toml").write_bytes(text)
        assert load_config(tmp_path / f"{number}.toml").to_dict()["analysis"] in ANALYSES


@FUZZ
@given(original=st.sampled_from(TOML_FILES), data=st.data())
def test_a_damaged_toml_file_is_read_or_refused(original, data):
    read_config(data.draw(damaged_bytes(original)))


@FUZZ
@given(table=configs)
def test_random_tables_of_known_keys_are_read_or_refused(table):
    with tempfile.TemporaryDirectory() as directory:
        config = only_interp_errors(lambda: parse_config(table, base=Path(directory)))
        event("read" if config is not None else "refused")
        if config is not None:
            config.to_dict()


@FUZZ
@given(original=st.sampled_from(SMALL), overrides=st.lists(any_text | st.tuples(st.sampled_from(["n", "limit", "prompts.limit", "prompts", "hooks", "a.b.c", "analysis"]),
       st.sampled_from(["=", " = ", ""]), any_text | toml_scalars.map(str)).map("".join), max_size=3))  # fmt: skip
def test_random_overrides_are_read_or_refused(original, overrides):
    read_config(original, tuple(overrides))


@FUZZ
@given(value=toml_values | json_values)
def test_a_random_table_is_refused_or_read(value):
    only_interp_errors(lambda: parse_config(value if isinstance(value, dict) else {"analysis": value}))
