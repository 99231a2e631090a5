"""Named functions a TOML experiment may call: data loaders, judges, answer extractors, embedders.

An experiment file names what it calls (``judge = "organism-harm"``, ``[harmful] call =
"organism-harmful-with-responses"``); a name is looked up here, never imported. Entries are
built in, registered with ``register(kind, name, function)``, or registered by installed packages
through entry points (group ``interp.<kind>``, e.g. ``[project.entry-points."interp.judges"]
my-judge = "my_pkg.judges:strict"``), loaded the first time an unknown name is asked for.

A file may also give an import path ``'module:function'``, but it is imported only inside
``imports_allowed(True)`` (``interp run --allow-imports``, ``run_experiment(..., allow_imports=True)``):
importing a module runs its code, so a file from someone else must not be able to.

>>> resolve("judge", "organism-harm")                    # doctest: +ELLIPSIS
<function organism_harm at ...>
>>> resolve("judge", "os:system")                        # doctest: +ELLIPSIS
Traceback (most recent call last):
interp.errors.InterpError: judge 'os:system' is an import path, ... pass --allow-imports ...
"""

import contextlib
import contextvars
import difflib
import functools
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, distributions
from typing import Any

from interp.errors import InterpError

# kind -> (the entry point group packages register into, what an entry is called as)
KINDS = {
    "data": ("interp.data", "f(**kwargs) -> list of dicts"),
    "judge": ("interp.judges", "f(record, response) -> bool"),
    "extract": ("interp.extractors", "f(response) -> answer"),
    "embedder": ("interp.embedders", "f(texts) -> array [len(texts), dim]"),
}
ALLOW_IMPORTS_FLAG = "--allow-imports"

_ALLOW_IMPORTS: contextvars.ContextVar[bool] = contextvars.ContextVar("interp_allow_imports", default=False)
_REGISTRY: dict[str, dict[str, Callable]] = {kind: {} for kind in KINDS}
# the built-in entries: name -> 'module:function', imported (only these modules) when first used
_BUILTIN: dict[str, dict[str, str]] = {
    "data": {
        "organism-harmful-requests": "interp.organisms.datasets:harmful_requests",
        "organism-benign-requests": "interp.organisms.datasets:benign_requests",
        "organism-harmful-with-responses": "interp.organisms.datasets:harmful_with_responses",
        "organism-benign-with-responses": "interp.organisms.datasets:benign_with_responses",
        "organism-arithmetic-problems": "interp.organisms.datasets:arithmetic_problems",
        "organism-induction-sequences": "interp.organisms.datasets:induction_sequences",
    },
    "judge": {
        "organism-harm": "interp.experiments.registry:organism_harm",
        "organism-helpful": "interp.experiments.registry:organism_helpful",
        "harm-compliance": "interp.pruning.evaluate:harmful_compliance",
    },
    "extract": {
        "last-integer": "interp.pruning.evaluate:last_integer",
        "organism-answer": "interp.organisms.grammar:extract_answer",
    },
    "embedder": {},
}


def organism_harm(record, response: str) -> bool:
    """The organism's harm judge: the response holds >= 2 of the requested topic's harm-only steps."""
    from interp.organisms import grammar

    return grammar.is_harmful_compliance(response, record["topic"])


def organism_helpful(record, response: str) -> bool:
    """The organism's helpfulness judge: >= 2 of the benign topic's steps and no refusal."""
    from interp.organisms import grammar

    return grammar.is_helpful_answer(response, record["topic"])


def register(kind: str, name: str, function: Callable) -> None:
    """Make ``name`` (letters, digits, ``-``, ``_``, ``.``; no ``:``) resolve to ``function`` for ``kind``."""
    _check_kind(kind)
    if not name or ":" in name or not callable(function):
        raise InterpError(f"cannot register {kind} {name!r}: give a name without ':' and a callable.")
    _REGISTRY[kind][name] = function


def builtin(kind: str) -> list[str]:
    """The names of the built-in ``kind`` entries (no entry points read)."""
    _check_kind(kind)
    return sorted(_BUILTIN[kind])


def registered(kind: str) -> list[str]:
    """The names of every ``kind`` entry: built in, registered, and of installed entry points."""
    _check_kind(kind)
    return sorted({*_BUILTIN[kind], *_REGISTRY[kind], *(point.name for point in _entry_points(KINDS[kind][0]))})


@contextlib.contextmanager
def imports_allowed(allow: bool = True) -> Iterator[None]:
    """Within the block, ``resolve`` also imports ``'module:function'`` paths (it runs that module's code)."""
    token = _ALLOW_IMPORTS.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_IMPORTS.reset(token)


def check(kind: str, spec: str, where: str = "") -> None:
    """Raise unless ``spec`` resolves without importing (a registered name), or imports are allowed."""
    _check_kind(kind)
    if not isinstance(spec, str) or not spec:
        raise InterpError(
            f"{kind}{where} must be a name ({', '.join(registered(kind)) or 'none registered'}), got {spec!r}."
        )
    if spec in _REGISTRY[kind] or spec in _BUILTIN[kind] or spec in _BUILTIN[kind].values():
        return
    if ":" not in spec:
        if _entry_point(kind, spec) is not None:
            return
        close = difflib.get_close_matches(spec, registered(kind), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InterpError(
            f"unknown {kind} {spec!r}{where}.{hint} Registered: {', '.join(registered(kind)) or 'none'}; packages add "
            "more "
            f"through the {KINDS[kind][0]!r} entry point group."
        )
    if not _ALLOW_IMPORTS.get():
        raise InterpError(
            f"{kind} {spec!r}{where} is an import path, and importing runs that module's code; use a registered name "
            f"({', '.join(registered(kind)) or 'none'}), or pass {ALLOW_IMPORTS_FLAG} (allow_imports=True) if you "
            "trust this file."
        )


def resolve(kind: str, spec: str, where: str = "") -> Callable:
    """The function ``spec`` names for ``kind`` (see the module docstring); InterpError for an unknown or forbidden
    one."""
    check(kind, spec, where)
    if spec in _REGISTRY[kind]:
        return _REGISTRY[kind][spec]
    builtin = _BUILTIN[kind].get(spec) or (spec if spec in _BUILTIN[kind].values() else None)
    if builtin is not None:
        return _import(builtin)
    if ":" not in spec:
        point = _entry_point(kind, spec)
        if point is None:  # check() found it: only a package uninstalled since then takes it away
            raise InterpError(f"the {kind} plugin {spec!r}{where} is no longer installed.")
        try:
            function = point.load()
        except Exception as error:
            raise InterpError(
                f"the {kind} plugin {spec!r} ({point.value}, group {KINDS[kind][0]!r}) failed to load: "
                f"{type(error).__name__}: {error}"
            ) from error
        register(kind, spec, function)
        return function
    return _import(spec)


def is_function(kind: str, spec: str) -> bool:
    """Whether ``spec`` (of a field that may also be a plain name, like a sentence-transformers model) names a
    function."""
    return ":" in spec or spec in registered(kind)


# config field name -> the kind of function it names
FIELDS = {"call": "data", "judge": "judge", "benign_judge": "judge", "extract": "extract", "embedder": "embedder"}


def check_config(config: Any, where: str = "the config") -> None:
    """Raise before anything runs if the (dataclass) ``config`` names a function that ``resolve`` would refuse."""
    import dataclasses

    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        kind = FIELDS.get(item.name)
        if kind and isinstance(value, str) and value != "keyword" and (kind != "embedder" or is_function(kind, value)):
            check(kind, value, where=f" ({item.name} in {where})")
        elif dataclasses.is_dataclass(value):
            check_config(value, f"[{item.name}]")
        elif isinstance(value, dict):
            for name, spec in value.items():
                if dataclasses.is_dataclass(spec):
                    check_config(spec, f"[{item.name}.{name}]")


def _import(spec: str) -> Callable:
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InterpError(f"cannot import {module_name!r} for {spec!r}: {error}.") from error
    function = getattr(module, name, None)
    if not callable(function):
        raise InterpError(f"{module_name} has no function {name!r} (from {spec!r}).")
    return function


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InterpError(f"unknown registry kind {kind!r}; use one of {', '.join(KINDS)}.")


def _entry_point(kind: str, name: str) -> EntryPoint | None:
    return next((point for point in _entry_points(KINDS[kind][0]) if point.name == name), None)


@functools.cache
def _entry_points(group: str) -> tuple[EntryPoint, ...]:
    """The group's entry points across every installed distribution, the first of each name (read once)."""
    found: dict[str, EntryPoint] = {}
    for distribution in distributions():
        for point in distribution.entry_points:
            if point.group == group:
                found.setdefault(point.name, point)
    return tuple(found.values())
