"""The package's parts and the imports that must never exist between them (``tests/import_rules.json``).

Every import counts, also one inside a function: a lazy import is still a dependency. Each module
of ``interp/`` belongs to exactly one part; the package root ``interp/__init__.py`` to none.
"""

import ast
import json
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
RULES = json.loads((Path(__file__).parent / "import_rules.json").read_text())
PACKAGE_ROOT = "interp/__init__.py"
MAX_MODULE_LINES = 620  # "no module over ~600 lines"


def package_sources(root: Path = REPOSITORY) -> dict[str, str]:
    """``{relative path: source}`` of every module of the package."""
    return {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8") for path in sorted((root / "interp").rglob("*.py"))}


def part_of(path: str, rules=RULES) -> str | None:
    """The part whose ``is`` list holds ``path`` (a file, or a folder ending in ``/``)."""
    for name, part in rules["parts"].items():
        for member in part["is"]:
            if path == member or (member.endswith("/") and path.startswith(member)):
                return name
    return None


def _module_path(module: str, files: set[str]) -> str | None:
    base = module.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if candidate in files:
            return candidate
    return None


def imported_paths(path: str, source: str, files: set[str]) -> set[str]:
    """The package files that the module at ``path`` imports, anywhere in its body."""
    package = path.removesuffix(".py").replace("/", ".")
    if path.endswith("__init__.py"):
        package = package.removesuffix(".__init__")
    else:
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from interp import defaults` imports the module interp.defaults; `from interp.x import name` imports interp.x
            modules = [f"{base}.{alias.name}" if _module_path(f"{base}.{alias.name}", files) else base for alias in node.names]
        else:
            continue
        for module in modules:
            if module == "interp" or not module.startswith("interp."):
                continue
            target = _module_path(module, files)
            if target is not None and target != path:
                found.add(target)
    return found


def violations(sources: dict[str, str], rules=RULES) -> list[str]:
    """One line per forbidden import, per module that belongs to no part, and per module over the size limit."""
    files = set(sources)
    never = {(low, high): why for low, high, why in rules["never"]}
    problems = []
    for path, source in sources.items():
        if path == PACKAGE_ROOT:
            continue
        part = part_of(path, rules)
        if part is None:
            problems.append(f"{path} belongs to no part: add it to a part in tests/import_rules.json")
            continue
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            problems.append(f"{path} has {lines} lines (limit {MAX_MODULE_LINES}): split it by job")
        for target in sorted(imported_paths(path, source, files)):
            other = part_of(target, rules)
            if other is not None and other != part and (part, other) in never:
                problems.append(f"{path} ({part}) imports {target} ({other}): {never[(part, other)]}")
    return problems


def test_the_package_keeps_the_import_rules():
    problems = violations(package_sources())
    assert not problems, "\n".join(problems)


def import_cycles(sources: dict[str, str]) -> list[list[str]]:
    """The modules that import each other, directly or around a loop (any import, also one inside a function)."""
    files = set(sources)
    graph = {path: sorted(imported_paths(path, source, files)) for path, source in sources.items()}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(path: str) -> None:  # Tarjan's strongly connected components
        order[path] = low[path] = len(order)
        stack.append(path)
        for target in graph[path]:
            if target not in order:
                visit(target)
                low[path] = min(low[path], low[target])
            elif target in stack:
                low[path] = min(low[path], order[target])
        if low[path] == order[path]:
            component = stack[stack.index(path):]
            del stack[stack.index(path):]
            if len(component) > 1:
                cycles.append(sorted(component))

    for path in sorted(graph):
        if path not in order:
            visit(path)
    return cycles


def test_the_package_has_no_import_cycles():
    cycles = import_cycles(package_sources())
    assert not cycles, "modules that import each other: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


def test_an_import_cycle_is_caught():
    sources = {"interp/a.py": "from interp import b\n", "interp/b.py": "def f():\n    from interp.a import x\n", "interp/c.py": "import interp.a\n"}
    assert import_cycles(sources) == [["interp/a.py", "interp/b.py"]]


@pytest.mark.parametrize(
    "path, source, expected",
    [
        ("interp/patching/synthetic.py", "def f():\n    from interp.commands.common import add_subcommand\n",
         "interp/patching/synthetic.py (Analyses) imports interp/commands/common.py (Face): the library knows no command line"),
        ("interp/synthetic_core.py", "import torch\n", "interp/synthetic_core.py belongs to no part"),
        ("interp/lens/logit.py", "from interp import demo\n", "interp/lens/logit.py (Analyses) imports interp/demo/__init__.py (Face)"),
        ("interp/store/activations.py", "from interp import plots\n",
         "interp/store/activations.py (Store) imports interp/plots.py (Plots): storage draws nothing"),
        ("interp/store/synthetic.py", "from .. import plots\n", "interp/store/synthetic.py (Store) imports interp/plots.py (Plots): storage draws nothing"),
        ("interp/provenance.py", "from interp.model import compat\n",
         "interp/provenance.py (Core) imports interp/model/compat.py (Model): the base knows no model internals"),
        ("interp/model/loading.py", "def f():\n    from interp.store import readout\n",
         "interp/model/loading.py (Model) imports interp/store/readout.py (Store): loading knows no store"),
        ("interp/model/registry.py", "from interp.organisms import grammar\n",
         "interp/model/registry.py (Model) imports interp/organisms/grammar.py (Organisms): the registry knows no organism"),
        ("interp/model/shortcuts.py", "from interp.metrics import reduce_metric\n",
         "interp/model/shortcuts.py (Model) imports interp/metrics.py (Analyses): loading knows no analysis"),
    ],
)
def test_a_forbidden_import_is_caught(path, source, expected):
    """A synthetic module (or a changed one) that breaks a rule is reported by name."""
    sources = package_sources()
    sources[path] = source
    assert any(line.startswith(expected) for line in violations(sources)), violations(sources)


def test_allowed_imports_are_not_reported():
    sources = {"interp/commands/x.py": "from interp.lens import logit_lens\nimport interp\n", "interp/lens/__init__.py": "from interp.sites import parse_site\n",
               "interp/sites.py": "", "interp/commands/__init__.py": ""}
    assert violations(sources) == []


def test_the_rules_are_the_intended_picture():
    """``import_rules.json`` holds every part and rule of the project's intended picture (``tests/architecture.json``), plus the additions its notes name."""
    picture = json.loads((Path(__file__).parent / "architecture.json").read_text())
    assert [tuple(rule) for rule in picture["never"]] == [tuple(rule) for rule in RULES["never"]]
    for name, part in picture["parts"].items():
        assert set(part["is"]) <= set(RULES["parts"][name]["is"]), name
