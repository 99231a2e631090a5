"""The registry of named models: ``register_model(name, resolve)`` makes ``load_model("name")`` and
``load_model("name:VARIANT")`` load the directory ``resolve(variant)`` returns.

Packages register theirs through the ``interp.models`` entry point group (the bundled organism:
``organism`` and ``organism:NAME``; the packaged real models of ``interp.model.pretrained``), loaded
the first time an unregistered name is asked for.
"""

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, distributions

from interp.errors import InterpError

ENTRY_POINT_GROUP = "interp.models"  # [project.entry-points."interp.models"] name = "module:register"
ORGANISM_PREFIX = "organism"  # the name the bundled organism registers under (its labels: organism:NAME)


@dataclass(frozen=True)
class RegisteredModel:
    """A named model: ``resolve(variant)`` gives the local directory (or hub id) to load."""

    name: str
    resolve: Callable[[str | None], str | os.PathLike]
    default_variant: str | None = None


_REGISTRY: dict[str, RegisteredModel] = {}
_LOADED_ENTRY_POINTS: set[str] = set()


def register_model(
    name: str, resolve: Callable[[str | None], str | os.PathLike], default_variant: str | None = None
) -> None:
    """Make ``load_model(name)`` / ``load_model(f"{name}:VARIANT")`` load ``resolve(VARIANT)``.

    Args:
        name: the model's name: letters, digits, ``-``, ``_`` or ``.``; no ``:`` or ``/``.
        resolve: variant (``None`` for the bare name, unless ``default_variant``) -> a local Hugging
            Face directory or a hub id. It raises ``InterpError`` for a variant it does not know.
        default_variant: the variant the bare name means; the model is then labelled ``name:VARIANT``.

    >>> register_model("tiny", lambda variant: f"/models/tiny-{variant}", default_variant="base")
    >>> resolve_model("tiny:chat")
    ('/models/tiny-chat', 'tiny:chat')
    """
    if not name or any(char in name for char in ":/\\ ") or name.startswith((".", "~")):
        raise InterpError(
            f"cannot register a model named {name!r}: use letters, digits, '-', '_' or '.' (no ':', '/', spaces)."
        )
    existing = _REGISTRY.get(name)
    if existing is not None and (existing.resolve, existing.default_variant) != (resolve, default_variant):
        raise InterpError(
            f"a model named {name!r} is already registered (by {_where(existing.resolve)}); pick another name."
        )
    _REGISTRY[name] = RegisteredModel(name, resolve, default_variant)


def registered_models() -> list[str]:
    """Names of every registered model, those of installed entry points included, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def resolve_model(name: str) -> tuple[str, str]:
    """``(what the loader gets, the label recorded as model_id)`` for a registered ``name`` or ``name:VARIANT``.

    Raises ``InterpError`` naming the registered models when ``name`` is not one of them.
    """
    prefix, _, variant = name.partition(":")
    entry = registered_model(prefix)
    if entry is None:
        models = registered_models()
        raise InterpError(
            f"no registered model named {prefix!r} (asked for {name!r}){did_you_mean(name)}; registered: "
            f"{', '.join(models) or 'none'}. Models register through the {ENTRY_POINT_GROUP!r} entry point group "
            "(refresh it with `pip install -e .`)."
        )
    chosen = variant or entry.default_variant
    source = entry.resolve(chosen)
    return str(source), (f"{entry.name}:{chosen}" if chosen else entry.name)


def did_you_mean(name: str) -> str:
    """`` (did you mean 'x'?)`` naming the registered models closest to ``name``, or ``""``."""
    import difflib

    names = registered_models()
    wanted = name.partition(":")[0].lower()
    close = [n for n in names if wanted and (n.startswith(wanted) or wanted in n)]
    close += [n for n in difflib.get_close_matches(wanted, names, n=3, cutoff=0.5) if n not in close]
    return f" (did you mean {' or '.join(repr(n) for n in close[:3])}?)" if close else ""


def registered_model(name: str) -> RegisteredModel | None:
    """The model registered as ``name`` (its entry point loaded first if need be), or None."""
    if name not in _REGISTRY:
        _load_entry_points(name)
    return _REGISTRY.get(name)


def _load_entry_points(name: str | None = None) -> None:
    """Run the ``register`` function of each not yet loaded entry point (only ``name``'s, if given)."""
    for point in _entry_points():
        if point.name in _LOADED_ENTRY_POINTS or (name is not None and point.name != name):
            continue
        _LOADED_ENTRY_POINTS.add(point.name)
        try:
            point.load()()
        except InterpError:
            raise
        except Exception as error:
            raise InterpError(
                f"the model plugin {point.name!r} ({point.value}, entry point group {ENTRY_POINT_GROUP!r}) "
                f"failed to register: {type(error).__name__}: {error}"
            ) from error


@functools.lru_cache(maxsize=1)
def _entry_points() -> tuple[EntryPoint, ...]:
    """The group's entry points across every installed distribution, the first of each name (read once).

    Not ``importlib.metadata.entry_points(group=...)``: it reads one distribution per name, so a
    stale ``interp.egg-info`` in the working directory would hide the installed package's.
    """
    found: dict[str, EntryPoint] = {}
    for distribution in distributions():
        for point in distribution.entry_points:
            if point.group == ENTRY_POINT_GROUP:
                found.setdefault(point.name, point)
    return tuple(found.values())


def _where(function: Callable) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
