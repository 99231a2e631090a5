"""Only ``interp/model/`` names the private attributes of transformer_lens, transformers and accelerate.

A private name is an attribute read or written as ``x._name`` (or through ``getattr(x, "_name")`` and friends) that
interp itself never defines. Inside ``interp/model/`` they are allowed (``interp/model/internals.py`` holds them);
anywhere else the test fails, naming the file, the line and the name.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "interp"
ALLOWED_DIRECTORY = PACKAGE / "model"
# torch's own private names, outside the rule's libraries: each with the reason it is read
TORCH_PRIVATE = {
    "_int_mm": "torch's int8 matrix product (probes' int8 Gram matrices); no public equivalent",
    "_version": "a tensor's in-place version counter (the weights-hash cache); no public equivalent",
}
DOTTED = re.compile(r"[A-Za-z0-9_.]+")  # a module or parameter path ("blocks.0._original_component.weight")
ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "hasattr", "delattr"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_private_names(trees: dict[Path, ast.AST]) -> set[str]:
    """Every private name interp defines: functions, classes, assigned attributes and names, parameters."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name):
                if node.value.id in ("self", "cls"):  # a write to another object's private attribute defines nothing
                    names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Call) and _called(node) == "__setattr__" and len(node.args) >= 2:
                if isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                    names.add(node.args[1].value)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[-1])
    return {name for name in names if _is_private(name)}


def _called(call: ast.Call) -> str:
    function = call.func
    return function.id if isinstance(function, ast.Name) else function.attr if isinstance(function, ast.Attribute) else ""


def foreign_private_names(trees: dict[Path, ast.AST], own: set[str]) -> list[str]:
    """``file:line name`` for each private name read outside ``interp/model/`` that interp does not define."""
    found = []
    for path, tree in trees.items():
        if path.is_relative_to(ALLOWED_DIRECTORY):
            continue
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    name = node.attr
            elif isinstance(node, ast.Call) and _called(node) in ATTRIBUTE_FUNCTIONS and len(node.args) >= 2:
                argument = node.args[1]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str) and _is_private(argument.value):
                    name = argument.value
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "._" in node.value and DOTTED.fullmatch(node.value):
                # a dotted path string naming a private segment ("blocks.0._original_component.weight")
                for segment in node.value.split("."):
                    if _is_private(segment) and segment.isidentifier() and segment not in own:
                        name = segment
            if name is not None and name not in own and name not in TORCH_PRIVATE:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def _trees(paths) -> dict[Path, ast.AST]:
    return {path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for path in paths}


def test_no_module_outside_interp_model_names_a_private_attribute_of_the_libraries():
    trees = _trees(sorted(PACKAGE.rglob("*.py")))
    assert foreign_private_names(trees, _own_private_names(trees)) == []


def test_the_check_finds_each_way_of_naming_one(tmp_path):
    """The old code's forms: ``getattr(m, "_original_component")``, ``config._attn_implementation``, a path string."""
    package = tmp_path / "interp"
    (package / "model").mkdir(parents=True)
    bad = package / "pruning.py"
    bad.write_text('def f(m, config):\n    getattr(m, "_original_component", None)\n    config._attn_implementation = "sdpa"\n'
                   '    return "x._original_component.weight", self_._private_thing\n')  # fmt: skip
    fine = package / "model" / "internals.py"
    fine.write_text('def g(m):\n    return getattr(m, "_original_component", None)\n')
    trees = _trees([bad, fine])
    global ROOT, ALLOWED_DIRECTORY
    saved = ROOT, ALLOWED_DIRECTORY
    ROOT, ALLOWED_DIRECTORY = tmp_path, package / "model"
    try:
        found = foreign_private_names(trees, _own_private_names(trees))
    finally:
        ROOT, ALLOWED_DIRECTORY = saved
    assert found == ["interp/pruning.py:2 _original_component", "interp/pruning.py:3 _attn_implementation",
                     "interp/pruning.py:4 _original_component", "interp/pruning.py:4 _private_thing"]  # fmt: skip
