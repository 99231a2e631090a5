"""The base of every TOML experiment: the keys all analyses share (``Experiment``), data-set tables
(``DatasetSpec``), field docs (``doc``) and the checks that turn parsed TOML into a config dataclass.

Each analysis is one config class in its own module of this package (``ANALYSIS``, ``run``); the
table of analyses (``interp.experiments.table.ANALYSES``) names them all.
"""

import collections.abc
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from interp import defaults
from interp.checks import check_numbers
from interp.errors import InterpError
from interp.experiments import registry

JUDGES = (
    "keyword",
    "organism-harm",
    "organism-helpful",
    "harm-compliance",
)  # the built-in judges ("keyword": the refusal-string rule only)
IMPORTS = (
    "an import path 'module:function' is imported only with --allow-imports "
    "(interp run, interp prune; allow_imports=True): it runs that module's code"
)


def doc(text: str, path: bool = False, choices: tuple[str, ...] | None = None, output: bool = False, **kwargs) -> Any:
    """A dataclass field whose ``text`` is its line in ``interp run --help`` and its flag's help.

    ``path``: a relative path starts at the TOML file; ``choices``: the values it allows (checked by
    ``check_choices``, offered by its flag); ``output``: a path the experiment writes to, which must
    lie inside ``--out`` unless the experiment allows otherwise (``allow_outside``; ``Experiment.output_path``).
    """
    return field(metadata={"doc": text, "path": path, "choices": choices, "output": output}, **kwargs)


def one_of(name: str, value: Any, allowed: Sequence[str]) -> None:
    """Raise unless ``value`` is among ``allowed``, naming them."""
    if value not in allowed:
        raise InterpError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}.")


def check_choices(config: Any) -> None:
    """Raise unless every field of ``config`` that declares ``choices`` holds one of them."""
    for item in dataclasses.fields(config):
        if item.metadata.get("choices"):
            one_of(item.name, getattr(config, item.name), item.metadata["choices"])


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: a file, or a function that returns a list of records (dicts)."""

    path: str | None = doc(
        "JSONL / JSON / CSV / TXT file; a relative path is relative to the TOML file", path=True, default=None
    )
    call: str | None = doc(
        f"a registered data loader that returns a list of dicts ({', '.join(registry.builtin('data'))}); {IMPORTS}",
        default=None,
    )
    kwargs: Mapping[str, Any] = doc("keyword arguments for `call`", default_factory=dict)
    text_field: str = doc("field holding the prompt", default="text")
    response_field: str = doc("field holding the response (for scores and losses)", default="response")
    where: Mapping[str, Any] = doc(
        'keep only records whose fields equal these values (a list: any of them), e.g. { category = "cyber" }',
        default_factory=dict,
    )
    offset: int = doc(
        "skip the first `offset` records (after `where`), e.g. to take a held-out block of the same file", default=0
    )
    limit: int | None = doc("use only the first `limit` records (after `where` and `offset`)", default=None)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.call is None):
            raise InterpError("a data set needs exactly one of `path` (a file) or `call` (a registered data loader).")
        if self.limit is not None and self.limit < 1:
            raise InterpError(f"limit must be at least 1, got {self.limit}.")
        if self.offset < 0:
            raise InterpError(f"offset must be 0 or more, got {self.offset}.")

    def load(self) -> list[dict[str, Any]]:
        """The records, each with the prompt under ``"text"`` and the response under ``"response"``."""
        if self.path is not None:
            from interp.data import PromptSet

            records = [dict(record) for record in PromptSet.from_file(self.path, text_field=self.text_field).records]
        elif self.call is None:  # refused by __post_init__
            raise InterpError("a data set needs exactly one of `path` (a file) or `call` (a registered data loader).")
        else:
            records = registry.resolve("data", self.call)(**dict(self.kwargs))
            if not isinstance(records, (list, tuple)) or not all(isinstance(r, Mapping) for r in records):
                raise InterpError(
                    f"{self.call}(**{dict(self.kwargs)}) must return a list of dicts, got {type(records).__name__}."
                )
            records = [
                {**record, "text": record.get(self.text_field)} if self.text_field != "text" else dict(record)
                for record in records
            ]
        if self.response_field != "response":
            records = [{**record, "response": record.get(self.response_field)} for record in records]
        if self.where:
            records = [
                record
                for record in records
                if all(
                    record.get(key) in value if isinstance(value, (list, tuple)) else record.get(key) == value
                    for key, value in self.where.items()
                )
            ]
            if not records:
                raise InterpError(f"no record of {self.describe()} has {dict(self.where)}; check the `where` table.")
        if self.offset and self.offset >= len(records):
            raise InterpError(
                f"{self.describe()} has {len(records)} records, so offset = {self.offset} leaves none; use a smaller "
                "offset."
            )
        records = records[self.offset :]
        return records[: self.limit] if self.limit else records

    def prompts(self, model=None, chat_template: bool = False):
        """The records as a ``PromptSet`` (each a user turn of the tokenizer's chat template when asked)."""
        from interp.data import PromptSet

        prompts = PromptSet.from_records(self.load(), source=self.describe())
        return prompts.apply_chat_template(model.tokenizer) if chat_template else prompts

    def describe(self) -> str:
        return self.path or f"{self.call}({', '.join(f'{k}={v!r}' for k, v in dict(self.kwargs).items())})"


def _inputs_hash(*sources: "DatasetSpec | str | None") -> str:
    """A hash of the records of each data set and of the manifest of each store directory."""
    from interp.provenance import hash_json

    manifests = [Path(source, "manifest.json") for source in sources if isinstance(source, str)]
    records = [
        source.load() for source in sources if source is not None and not isinstance(source, str)
    ]  # data-set tables
    return hash_json(
        [records, [path.read_text(encoding="utf-8") if path.exists() else str(path) for path in manifests]]
    )[:16]


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """The keys of every analysis: its name and the model it runs on."""

    ANALYSIS: ClassVar[str] = ""
    name: str = doc("experiment name, shown in figures and logs", default="experiment")
    model: str = doc(
        "'organism', a registered name, a local Hugging Face directory (one starting with ./ or ../ is relative to "
        "the TOML file), or a hub id",
        default=defaults.MODEL,
    )
    dtype: str = doc(
        "model dtype: float32, bfloat16 or float16 (pruning scores always accumulate in float32)", default="float32"
    )
    device: str | None = doc("cpu, cuda, ... (default: cuda if available)", default=None)
    allow_outside: bool = doc(
        "let the paths the experiment writes to (e.g. [completions] directory, orthogonalize_out) lead outside --out "
        "(interp run --allow-outside)",
        default=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """What ``config.json`` records: the analysis and every key (but ``allow_outside``, which changes no result)."""
        record = json.loads(json.dumps(dataclasses.asdict(self), default=list))
        record.pop("allow_outside", None)
        return {"analysis": self.ANALYSIS, **record}

    def output_paths(self) -> dict[str, str]:
        """Every path this experiment writes to besides ``--out`` itself, by key (``[completions] directory``)."""
        found: dict[str, str] = {}

        def walk(config: Any, where: str) -> None:
            for spec in dataclasses.fields(config):
                value = getattr(config, spec.name)
                if spec.metadata.get("output") and value is not None:
                    found[f"{where}{spec.name}" if not where else f"[{where}] {spec.name}"] = str(value)
                elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                    walk(value, spec.name)

        walk(self, "")
        return found

    def check_outputs(self, out: Path) -> None:
        """Refuse, before any work, an output path that leads outside ``out`` without ``allow_outside``."""
        for key, path in self.output_paths().items():
            self.output_path(out, path, key)

    def output_path(self, out: Path, path: str | Path, key: str) -> Path:
        """Where the output ``key`` (``path``: relative to ``out``, or absolute) is written: inside ``out``, or
        anywhere when the experiment has ``allow_outside``; an InterpError naming the key and the fix otherwise."""
        target = (Path(out) / path).resolve()
        if not target.is_relative_to(Path(out).resolve()) and not self.allow_outside:
            raise InterpError(
                f"{key} {str(path)!r} leads outside --out {out} (to {target}); write it inside --out, or allow it with "
                "allow_outside = true in the TOML file or interp run --allow-outside."
            )
        return target

    def load_model(self, model=None):
        from interp.model import load_model

        return model if model is not None else load_model(self.model, device=self.device, dtype=self.dtype)

    def run(
        self, out: Path, model=None, progress: bool = True
    ) -> Any:  # the analysis: writes its result and config.json to `out`
        raise NotImplementedError

    def _once(self, out: Path, sources: tuple, load: Callable, compute: Callable, write: Callable | None = None) -> Any:
        """The result in ``out`` if it is of this config and data; else ``compute()``, written, then ``config.json``."""
        from interp.directories import saved_result, write_record

        record = {**self.to_dict(), "inputs_hash": _inputs_hash(*sources)}
        result = saved_result(out, record, load)
        if result is None:
            result = compute()
            (write or (lambda found, directory: found.save(directory)))(result, out)
            write_record(out, record)
        return result


def positions_argument(positions: str | tuple[int, ...]) -> Literal["last", "all"] | list[int]:
    """A config's ``positions`` as the analyses take them: 'last', 'all' or a list of positions."""
    if positions == "last":
        return "last"
    if positions == "all":
        return "all"
    if isinstance(positions, tuple):
        return list(positions)
    raise InterpError(f"positions must be 'last', 'all' or a list of integers, got {positions!r}.")


def resolve_judge(spec: str | None) -> Callable | None:
    """A judge ``f(record, response) -> bool`` from its registered name (None for 'keyword': the keyword rule only)."""
    return None if spec is None or spec == "keyword" else registry.resolve("judge", spec)


def did_you_mean(word: str, known) -> str:
    """`` Did you mean 'x'?`` naming the one of ``known`` closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def build(cls: type, data: Any, where: str) -> Any:
    """The dataclass ``cls`` of the table ``data`` (nested tables built), each key checked; a one-line error naming
    ``where``."""
    if not isinstance(data, Mapping):
        raise InterpError(f"{where} must be a table, got {type(data).__name__} {data!r}.")
    fields = {item.name: item for item in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise InterpError(
                f"unknown key {key!r} in {where}.{did_you_mean(key, fields)} Known keys: {', '.join(fields)}."
            )
    values = {key: _value(fields[key].type, value, key, where) for key, value in data.items()}
    check_numbers(values, where=f" in {where}")
    for key, value in values.items():
        if fields[key].metadata.get("path") and isinstance(value, str) and "\x00" in value:
            raise InterpError(
                f"{key!r} in {where} is {value!r:.80}, which holds a NUL character no path can contain; give the "
                "file's path."
            )
    missing = [
        name
        for name, item in fields.items()
        if name not in values and item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise InterpError(f"{where} is missing {', '.join(repr(name) for name in missing)}.")
    return cls(**values)


def type_options(kind: Any) -> list[Any]:
    """The types a field of type ``kind`` accepts (the arms of a union, None left out)."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    return [option for option in (typing.get_args(kind) if union else (kind,)) if option is not type(None)]


def table_type(kind: Any) -> type | None:
    """The dataclass of a ``Mapping[str, Dataclass]`` field (a table of tables), else None."""
    return (
        typing.get_args(kind)[1]
        if typing.get_origin(kind) is collections.abc.Mapping and dataclasses.is_dataclass(typing.get_args(kind)[1])
        else None
    )


def _value(kind: Any, value: Any, key: str, where: str) -> Any:
    """``value`` checked against the field type ``kind`` (nested tables built), or a one-line error."""
    table = f"[{key}]" if where == "the config" else f"{where[:-1]}.{key}]"
    for option in type_options(kind):
        if isinstance(option, type) and dataclasses.is_dataclass(option):
            return build(option, value, table)
        nested = table_type(option)
        if nested is not None:
            if not isinstance(value, Mapping):
                raise InterpError(f"{key!r} in {where} must be a table of [{key}.NAME] tables, got {value!r}.")
            return {name: build(nested, spec, f"{table[:-1]}.{name}]") for name, spec in value.items()}
    converted = _convert(kind, value)
    if converted is _BAD:
        raise InterpError(f"{key!r} in {where} must be {_describe(kind)}, got {value!r}.")
    return converted


_BAD = object()
_NAMES = {
    str: ("a string", "strings"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "booleans"),
}


def _convert(kind: Any, value: Any) -> Any:
    """``value`` as ``kind`` (a list as a tuple, an integer as a float, one value as a one-item tuple), or ``_BAD``."""
    options = type_options(kind)
    if len(options) > 1:
        return next((found for found in (_convert(option, value) for option in options) if found is not _BAD), _BAD)
    kind = options[0]
    if kind is Any:
        return value
    if kind in (bool, str):
        return value if isinstance(value, kind) else _BAD
    if kind in (int, float):
        return (
            kind(value)
            if isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
            else _BAD
        )
    if typing.get_origin(kind) is tuple:
        items = [
            _convert(typing.get_args(kind)[0], element)
            for element in (value if isinstance(value, (list, tuple)) else [value])
        ]
        return _BAD if any(found is _BAD for found in items) else tuple(items)
    if typing.get_origin(kind) is collections.abc.Mapping:
        return dict(value) if isinstance(value, Mapping) else _BAD
    return _BAD


def _describe(kind: Any) -> str:
    words = []
    for option in type_options(kind):
        if typing.get_origin(option) is tuple:
            words.append(
                "a list of " + " or ".join(_NAMES[item][1] for item in type_options(typing.get_args(option)[0]))
            )
        else:
            words.append("a table" if typing.get_origin(option) is collections.abc.Mapping else _NAMES[option][0])
    return " or ".join(words)


def absolute_paths(config: Any, base: Path) -> Any:
    """``config`` with every relative path (data-set files, store directories) made absolute from ``base``."""
    changes: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if item.metadata.get("path") and isinstance(value, str) and not Path(value).is_absolute():
            changes[item.name] = str((base / value).resolve())
        elif dataclasses.is_dataclass(value):
            changes[item.name] = absolute_paths(value, base)
        elif isinstance(value, Mapping) and value and all(dataclasses.is_dataclass(v) for v in value.values()):
            changes[item.name] = {name: absolute_paths(v, base) for name, v in value.items()}
    return dataclasses.replace(config, **changes) if changes else config
