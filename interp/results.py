"""The result contract: every analysis returns a ``Result``: ``figure()``, ``save(dir)``, ``load(dir)``, ``provenance``.

A result class is a frozen dataclass that subclasses ``Result`` and declares its ``FORMAT`` (``interp.io.ResultFormat``:
tag, version, file names, how to make and load one). Saving and loading are derived from the fields:

- a ``Tensor`` field (``Float[Tensor, ...]`` too) goes to the format's safetensors file under its own name
  (bool tensors as uint8, read back as bool);
- ``provenance`` goes to the meta's ``"provenance"`` (``Provenance.to_dict``);
- a field that is itself a ``Result`` is saved to (and loaded from) the subdirectory named after the field;
- every other field goes to the JSON meta under its own name, and is checked against its annotation on load:
  ``int``, ``float``, ``str``, ``bool``, ``None``, ``Literal``, unions, ``tuple[X, ...]``, ``tuple[X, Y]``,
  ``list[X]``, ``dict[str, X]`` / ``Mapping[str, X]`` and nested dataclasses. A field missing from the file takes its
  default (a field added in a later version); without one the file is damaged.

Whatever is wrong with a saved file (a missing or retyped field, a tensor of the wrong shape, values that
contradict each other, JSON nested too deeply) is one ``InterpError`` line naming the file and the field; the class's
own ``__post_init__`` checks (lengths that must agree, shapes) run on load like on construction.

A nested record saved in a layout of its own declares ``saved_layout()`` and the classmethod
``fields_from_saved_layout(data)`` (its fields, as JSON, from that layout); the fields are then checked as usual.

A class adds what is not a field with ``meta_extra()`` (derived keys written for other readers, e.g. a CSV's shape)
and ``files()`` (text files such as a CSV table); ``FIGURE_FILE`` names where ``save`` writes ``figure()``.
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from torch import Tensor

from interp.errors import InterpError
from interp.io import ResultFormat, SavedResult, read_result, write_result
from interp.provenance import Provenance

R = TypeVar("R", bound="Result")
_NoneType = type(None)


class Result:
    """Base of every analysis result (see the module docstring); subclasses are frozen dataclasses."""

    FORMAT: ClassVar[ResultFormat]
    provenance: Provenance | None  # every result class declares it as a field
    FIGURE_FILE: ClassVar[str | None] = "figure.html"  # where ``save`` writes ``figure()`` (None: no figure file)

    # ---- what a subclass provides -----------------------------------------------------------------
    def figure(self) -> Any:
        """The result's interactive Plotly figure."""
        raise NotImplementedError(f"{type(self).__name__} does not draw a figure")

    def files(self) -> dict[str, str]:
        """Text files written beside the meta (name -> text), e.g. a CSV table."""
        return {}

    def figures(self) -> dict[str, Any]:
        """The figures ``save`` writes as offline HTML (name -> figure): ``figure()`` as ``FIGURE_FILE``."""
        return {self.FIGURE_FILE: self.figure()} if self.FIGURE_FILE else {}

    def meta_extra(self) -> dict[str, Any]:
        """Keys written into the meta beside the fields, for other readers; ignored on load."""
        return {}

    def tensor_metadata(self) -> dict[str, str]:
        """String metadata written into the safetensors header beside the format tag."""
        return {}

    # ---- derived ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The meta ``save`` writes, as JSON-ready data (format tag, fields but the tensors, provenance)."""
        meta: dict[str, Any] = {"format": self.FORMAT.tag, "format_version": self.FORMAT.version, **self._split()[1]}
        return meta | {"provenance": self.provenance.to_dict() if self.provenance is not None else None}

    def save(self, directory: str | Path) -> Path:
        """Write the nested results, the tensors, the text files, the figure and, last, the meta (each atomically).

        Returns the directory.
        """
        tensors, meta, nested = self._split()
        for name, result in nested.items():  # a result inside a result: its own directory, named after the field
            result.save(Path(directory) / name)
        return write_result(
            directory,
            self.FORMAT,
            dict(self.meta_extra()) | meta,
            provenance=self.provenance,
            tensors=tensors if self.FORMAT.tensors_file else None,
            tensor_metadata=self.tensor_metadata(),
            files=self.files(),
            figures=self.figures(),
        )

    def _split(self) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, "Result"]]:
        """The fields but provenance, as they are saved: tensors (for the tensors file), JSON meta, nested results."""
        tensors: dict[str, Tensor] = {}
        meta: dict[str, Any] = {}
        nested: dict[str, Result] = {}
        hints = _hints(type(self))
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            name, value = spec.name, getattr(self, spec.name)
            if name == "provenance":
                continue
            if isinstance(value, Result):
                nested[name] = value
            elif (
                _is_tensor_hint(hints[name]) and not self.FORMAT.tensors_file
            ):  # a format without a tensors file keeps them in the JSON
                meta[name] = None if value is None else value.detach().cpu().tolist()
            elif _is_tensor_hint(hints[name]):
                if value is not None:
                    value = value.detach().cpu().contiguous()
                    tensors[name] = value.to(torch.uint8) if value.dtype == torch.bool else value
            else:
                meta[name] = to_json(value)
        return tensors, meta, nested

    @classmethod
    def load(cls: type[R], directory: str | Path) -> R:
        """Read a result written by ``save`` (also by an earlier interp); every field is checked against its type."""
        saved = read_result(directory, cls.FORMAT)
        return cls.from_saved(saved)

    @classmethod
    def from_saved(cls: type[R], saved: SavedResult) -> R:
        """The result held by ``saved``; InterpError naming the file and the field when it does not fit the class."""
        hints = _hints(cls)
        values: dict[str, Any] = {}
        tensor_names = set(saved.tensors or ())
        for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
            name, hint = spec.name, hints[spec.name]
            if name == "provenance":  # a result saved without one reads as "unknown" where the class needs one
                values[name] = (
                    saved.provenance
                    if saved.provenance is not None or _is_optional(hint)
                    else Provenance("", "", versions={}, workarounds=())
                )
            elif isinstance(hint, type) and issubclass(hint, Result):
                values[name] = hint.load(saved.path.parent / name)
            elif _is_tensor_hint(hint) and not cls.FORMAT.tensors_file:
                if name in saved.meta:
                    values[name] = _tensor_from_json(
                        saved.meta[name], hint, name, lambda problem: damaged(cls.FORMAT, saved.path, problem)
                    )
                elif not _has_default(spec) and not _is_optional(hint):
                    raise damaged(cls.FORMAT, saved.path, f"lacks the field {name!r}")
            elif _is_tensor_hint(hint):
                if name in tensor_names:
                    tensor = saved.tensors[name]  # type: ignore[index]
                    values[name] = tensor.bool() if _is_bool_tensor_hint(hint) else tensor
                elif _is_optional(hint):
                    values[name] = None
                elif not _has_default(spec):
                    where = saved.tensors.path if saved.tensors is not None else saved.path
                    raise damaged(cls.FORMAT, where, f"lacks the tensor {name!r}")
            elif name in saved.meta:
                values[name] = from_json(
                    saved.meta[name], hint, name, lambda problem: damaged(cls.FORMAT, saved.path, problem)
                )
            elif not _has_default(spec):
                raise damaged(cls.FORMAT, saved.path, f"lacks the field {name!r}")
        try:
            return cls(**values)
        except InterpError as error:
            raise damaged(cls.FORMAT, saved.path, f"does not hold together: {error}") from error
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, RuntimeError) as error:
            raise damaged(
                cls.FORMAT, saved.path, f"does not hold together ({type(error).__name__}: {error})"
            ) from error


def damaged(fmt: ResultFormat, path: Path, problem: str) -> InterpError:
    """The one-line error for a saved result that cannot be read as it is."""
    problem = " ".join(str(problem).split())
    return InterpError(
        f"{path} {problem}; the saved {fmt.name} is damaged or was edited by hand. Create it again with {fmt.create}."
    )


# ---- JSON <-> field values ----------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A field's value as JSON-ready data (tuples as lists, dataclasses and Provenance as dicts)."""
    if isinstance(value, Provenance):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(
            value, "saved_layout"
        ):  # a record saved in a layout of its own (kept for files written before the contract)
            return to_json(value.saved_layout())
        return {spec.name: to_json(getattr(value, spec.name)) for spec in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, np.ndarray):  # NumPy arrays are saved as nested lists, NaN and infinities as null
        return _finite_or_null(np.asarray(value, dtype=np.float64).tolist())
    return value


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_null(item) for item in value]
    return value if np.isfinite(value) else None


def _array_from_json(value: Any, name: str, error) -> np.ndarray:
    """A float64 array from nested lists of numbers, null read as NaN."""

    def numbers(item: Any, depth: int) -> Any:
        if isinstance(item, list) and depth < 8:
            return [numbers(x, depth + 1) for x in item]
        if item is None:
            return np.nan
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            return item
        raise error(f"field '{name}' should hold numbers (null for NaN), got {_kind(item)}")

    try:
        return np.array(numbers(value, 0), dtype=np.float64)
    except ValueError as problem:  # ragged nesting
        raise error(f"field '{name}' is not a rectangular array of numbers ({problem})") from problem


def from_json(value: Any, hint: Any, name: str, error, depth: int = 0) -> Any:
    """``value`` read from JSON as the annotation ``hint`` asks; ``error(problem)`` builds the exception to raise."""
    if depth > 32:
        raise error(f"field '{name}' is nested deeper than any result writes")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if hint is np.ndarray or getattr(hint, "array_type", None) is np.ndarray:
        return _array_from_json(value, name, error)
    if hint is _NoneType:
        if value is None:
            return None
        raise error(f"field '{name}' should be null, got {_kind(value)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and _NoneType in args:
            return None
        for option in (arg for arg in args if arg is not _NoneType):
            try:
                return from_json(value, option, name, _Mismatch, depth + 1)
            except _Mismatch:
                continue
        raise error(f"field '{name}' should be {_describe(hint)}, got {_kind(value)}")
    if origin is Literal:
        if any(value == arg and type(value) is type(arg) for arg in args):
            return value
        raise error(f"field '{name}' should be one of {', '.join(repr(arg) for arg in args)}, got {value!r}"[:300])
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list) or hint in (tuple, list):
        if isinstance(value, list):
            if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
                if len(value) != len(args):
                    raise error(f"field '{name}' should hold {len(args)} items, got {len(value)}")
                return tuple(
                    from_json(item, arg, f"{name}[{i}]", error, depth + 1)
                    for i, (item, arg) in enumerate(zip(value, args))
                )
            item_hint = args[0] if args else Any
            items = [from_json(item, item_hint, f"{name}[{i}]", error, depth + 1) for i, item in enumerate(value)]
            return tuple(items) if origin is tuple or hint is tuple else items
    elif hint in (dict, Mapping) or (origin is not None and _is_mapping(origin)):
        if isinstance(value, dict):
            value_hint = args[1] if len(args) == 2 else Any
            return {
                key: from_json(item, value_hint, f"{name}[{key!r}]", error, depth + 1) for key, item in value.items()
            }
    elif hint is Provenance:
        if isinstance(value, dict):
            try:
                return Provenance.from_dict(value)
            except (TypeError, ValueError, KeyError, AttributeError) as problem:
                raise error(f"field '{name}' is not a provenance record ({problem})") from problem
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, dict) and hasattr(hint, "fields_from_saved_layout"):
            try:
                value = hint.fields_from_saved_layout(value)
            except (KeyError, TypeError, AttributeError) as problem:
                raise error(
                    f"field '{name}' is not a saved {hint.__name__} ({type(problem).__name__}: {problem})"
                ) from problem
        if isinstance(value, dict):
            nested = _hints(hint)
            unknown = set(value) - {spec.name for spec in dataclasses.fields(hint)}
            if unknown:
                raise error(f"field '{name}' has keys {sorted(unknown)[:3]} that a {hint.__name__} does not")
            kwargs = {}
            for spec in dataclasses.fields(hint):
                if spec.name in value:
                    kwargs[spec.name] = from_json(
                        value[spec.name], nested[spec.name], f"{name}.{spec.name}", error, depth + 1
                    )
                elif not _has_default(spec):
                    raise error(f"field '{name}' lacks {spec.name!r}")
            try:
                return hint(**kwargs)
            except (InterpError, TypeError, ValueError) as problem:
                raise error(f"field '{name}' does not hold together: {problem}") from problem
    elif isinstance(hint, type):
        if isinstance(value, hint):
            return value
    else:
        return value  # an annotation this reader does not know (a TypeVar, a Protocol): the class checks it
    raise error(f"field '{name}' should be {_describe(hint)}, got {_kind(value)}")


def _tensor_from_json(value: Any, hint: Any, name: str, error) -> Tensor | None:
    """A tensor kept in the JSON meta as nested lists of numbers."""
    if value is None and _is_optional(hint):
        return None
    dtypes = tuple(getattr(_tensor_type(hint), "dtypes", ()))
    dtype = (
        torch.bool
        if dtypes == ("bool", "bool_")
        else torch.int64
        if "int64" in dtypes and "float32" not in dtypes
        else torch.float32
    )
    try:
        tensor = torch.tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise error(f"field '{name}' should be a list of numbers, got {_kind(value)}") from None
    return tensor


class _Mismatch(Exception):
    """One option of a union did not fit (the union reports the whole)."""


def _is_mapping(origin: Any) -> bool:
    try:
        return issubclass(origin, Mapping)
    except TypeError:
        return False


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", _NoneType: "null"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin in (tuple, list) or hint in (tuple, list):
        return "a list" + (
            f" of {_describe(args[0])}" if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else ""
        )
    if hint in (dict, Mapping) or (origin is not None and _is_mapping(origin)):
        return "an object"
    return (
        f"a {getattr(hint, '__name__', str(hint))} record"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint)
        else str(hint)
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The class's field annotations, resolved (cached per class)."""
    if cls not in _HINTS:
        module = __import__(cls.__module__, fromlist=["_"])
        _HINTS[cls] = typing.get_type_hints(cls, globalns=vars(module), include_extras=False)
    return _HINTS[cls]


def _tensor_type(hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not _NoneType]
        return _tensor_type(options[0]) if len(options) == 1 else None
    if hint is Tensor or getattr(hint, "array_type", None) is Tensor:
        return hint
    return None


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and _NoneType in typing.get_args(hint)


def _is_tensor_hint(hint: Any) -> bool:
    return _tensor_type(hint) is not None


def _is_bool_tensor_hint(hint: Any) -> bool:
    return list(getattr(_tensor_type(hint), "dtypes", ())) == ["bool", "bool_"]  # jaxtyping's Bool[Tensor, ...]


def _has_default(spec: dataclasses.Field) -> bool:
    return spec.default is not dataclasses.MISSING or spec.default_factory is not dataclasses.MISSING
