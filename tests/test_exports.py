"""The package's public names: every key function of the README's table is ``interp.<name>``, and each
lazily imported name (``interp``, ``interp.model``, ``interp.store``) is the one its module defines and
the one its ``TYPE_CHECKING`` import shows IDEs."""

import ast
import importlib
import re
from pathlib import Path

import pytest

import interp

ROOT = Path(__file__).resolve().parents[1]
LAZY_PACKAGES = {"interp": "_LAZY", "interp.model": "_EXPORTS", "interp.store": "_EXPORTS"}


def readme_key_functions() -> list[str]:
    """The plain names (``logit_lens``, not ``interp.metrics.logit_diff`` or ``logit_lens(...)``) in the key-functions column."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| module | question | key functions | command line |")
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        column = line.split(" | ")[2]
        names += [name for name in re.findall(r"`([^`]+)`", column) if name.isidentifier()]
    return names


def test_the_readme_table_names_functions():
    names = readme_key_functions()
    assert len(names) >= 30 and "logit_lens" in names and "train_tuned_lens" in names, names


@pytest.mark.parametrize("name", readme_key_functions())
def test_every_key_function_of_the_readme_is_at_the_package_root(name):
    assert name in interp.__all__ and name in dir(interp), f"interp.{name} is not exported: add it to _LAZY in interp/__init__.py"
    assert callable(getattr(interp, name)), name


def _type_checking_imports(package: str) -> dict[str, str]:
    """``{name: module}`` of the imports under ``if TYPE_CHECKING:`` in the package's ``__init__.py``."""
    tree = ast.parse((ROOT / package.replace(".", "/") / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING")
    return {alias.name: node.module for node in ast.walk(block) if isinstance(node, ast.ImportFrom) for alias in node.names}


@pytest.mark.parametrize("package", sorted(LAZY_PACKAGES))
def test_lazy_names_resolve_and_match_what_type_checkers_see(package):
    module = importlib.import_module(package)
    lazy = getattr(module, LAZY_PACKAGES[package])
    assert _type_checking_imports(package) == lazy, f"{package}: the TYPE_CHECKING imports differ from {LAZY_PACKAGES[package]}"
    for name, where in lazy.items():
        assert getattr(module, name) is getattr(importlib.import_module(where), name), f"{package}.{name}"
        assert name in dir(module) and name in module.__all__, f"{package}.{name} is missing from dir() or __all__"
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        getattr(module, "no_such_name")
