"""Command-line flags made from an experiment config's fields, so each analysis' settings are declared once.

``add_config_flags(parser, LensConfig, ("sites", "top_k"))`` adds ``--sites`` and ``--top-k``: the
field's default, its ``doc`` text as the help, a type from its annotation (``int``, ``float``, ``str``,
``X | None``; ``bool`` as ``--name / --no-name``; a path field as a ``Path``) and the ``choices`` its
``doc`` declares. A list field (``tuple[...]``) is comma-separated text on the command line, its default
shown comma-joined (``--sites resid_pre,resid_post``); the command splits the text.

A command spells a field differently only where its flag was named so before the config existed
(``Flag(name="--target", repeat=True)`` for ``targets``); the flag's ``dest`` is always the field's name.
Nothing here imports torch: ``interp --help`` builds every flag.
"""

import argparse
import dataclasses
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.experiments.base import type_options


@dataclass(frozen=True)
class Flag:
    """How a command spells one config field where it differs from ``--field-name`` taking the field's own form."""

    name: str | None = None  # the option, e.g. "--target" for the field `targets` (default: --field-name)
    metavar: str | None = None
    repeat: bool = False  # a list given by repeating the flag (its items may hold commas), not as comma-separated text
    single: bool = False  # the command takes one item of the list; its default is the list's only item


PLAIN = Flag()


def config_field(config: type, name: str) -> dataclasses.Field:
    """The dataclass field ``name`` of ``config``; KeyError naming the fields it has."""
    fields = {item.name: item for item in dataclasses.fields(config)}
    if name not in fields:
        raise KeyError(f"{config.__name__} has no field {name!r}; its fields: {', '.join(fields)}")
    return fields[name]


def field_default(item: dataclasses.Field) -> Any:
    """The field's default (``dataclasses.MISSING`` for a required field)."""
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def config_default(config: type, name: str) -> Any:
    """The default of ``config``'s field ``name``."""
    return field_default(config_field(config, name))


def field_choices(config: type, name: str) -> tuple[str, ...] | None:
    """The values ``config``'s field ``name`` allows (its ``doc(..., choices=...)``), or None for any."""
    return config_field(config, name).metadata.get("choices")


def flag_name(name: str, flag: Flag = PLAIN) -> str:
    """The option a field is given by: ``flag.name``, else ``--field-name``."""
    return flag.name or f"--{name.replace('_', '-')}"


def comma_text(value: Any) -> Any:
    """A list default as the command line writes it (``("a", "b")`` -> ``"a,b"``); anything else as it is."""
    return ",".join(str(item) for item in value) if isinstance(value, (tuple, list)) else value


def list_type(kind: Any) -> Any:
    """The ``tuple[X, ...]`` arm of a field type, or None when the field is no list."""
    return next((option for option in type_options(kind) if typing.get_origin(option) is tuple), None)


def flag_arguments(item: dataclasses.Field, flag: Flag = PLAIN) -> dict[str, Any]:
    """The ``add_argument`` keywords of the flag of the field ``item`` (TypeError for a field no flag can give)."""
    options, default = type_options(item.type), field_default(item)
    keywords: dict[str, Any] = {"dest": item.name, "help": item.metadata["doc"].replace("%", "%%")}
    if default is dataclasses.MISSING:
        keywords["required"] = True
    else:
        keywords["default"] = default
    if item.metadata.get("choices"):
        keywords["choices"] = item.metadata["choices"]
    if flag.metavar:
        keywords["metavar"] = flag.metavar
    elif flag.name:  # a renamed flag shows its own name, not the field's
        keywords["metavar"] = flag.name.lstrip("-").replace("-", "_").upper()
    listed = list_type(item.type)
    if options == [bool]:
        keywords["action"] = argparse.BooleanOptionalAction
    elif listed is not None:
        element = type_options(typing.get_args(listed)[0])
        if flag.repeat:
            if default is not None:
                raise TypeError(f"{item.name}: a repeated flag collects its items from None, not from {default!r}")
            keywords["action"] = "append"
        elif flag.single:
            if len(element) != 1 or not isinstance(default, tuple) or len(default) != 1:
                raise TypeError(f"{item.name}: a single-item flag needs one item type and a one-item default")
            keywords["type"], keywords["default"] = element[0], default[0]
        else:
            if default is not dataclasses.MISSING:
                keywords["default"] = comma_text(default)
            keywords.setdefault("metavar", f"{item.name.upper()}[,...]")
    elif options in ([int], [float]):
        keywords["type"] = options[0]
    elif options == [str]:
        if item.metadata.get("path"):
            keywords["type"] = Path
    else:
        raise TypeError(f"{item.name}: a field of type {item.type} has no command-line form; give it a flag of its own")
    return keywords


def add_config_flags(
    parser: argparse.ArgumentParser, config: type, names: Iterable[str], flags: Mapping[str, Flag] | None = None
) -> dict[str, argparse.Action]:
    """Add a flag for each of ``config``'s fields ``names`` (``flags``: where a command spells one otherwise)."""
    flags = flags or {}
    unknown = set(flags) - set(names)
    if unknown:
        raise KeyError(f"flags given for fields that get no flag: {', '.join(sorted(unknown))}")
    actions = {}
    for name in names:
        flag = flags.get(name, PLAIN)
        actions[name] = parser.add_argument(flag_name(name, flag), **flag_arguments(config_field(config, name), flag))
    return actions


def set_config_defaults(parser: argparse.ArgumentParser, config: type, names: Sequence[str]) -> None:
    """Give ``parser`` the defaults of ``config``'s fields ``names`` without flags, in the form their flags take."""
    parser.set_defaults(**{name: flag_arguments(config_field(config, name)).get("default") for name in names})
