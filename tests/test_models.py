"""The registry of named models: registered names resolve and load, unknown ones fail naming the
registered ones, the organism registers itself through the ``interp.models`` entry point, and the
model package and the core do not import the organisms package."""

import ast
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

from interp.errors import InterpError
from interp.model import load_model, model_id, register_model, registered_models, registry, resolve_model

REPOSITORY = Path(__file__).resolve().parents[1]
LOGIT_TOLERANCE = 0.0  # the same directory loaded under two names: identical weights, identical logits


@pytest.fixture
def fresh_registry(monkeypatch):
    """A copy of the registry for one test: what it registers is gone afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_LOADED_ENTRY_POINTS", set(registry._LOADED_ENTRY_POINTS))
    return registry._REGISTRY


def test_a_registered_name_resolves_and_loads_under_its_label(fresh_registry, tiny_model_dirs):
    register_model("synthetic-tiny", lambda variant: tiny_model_dirs[variant], default_variant="llama")
    assert "synthetic-tiny" in registered_models()
    assert resolve_model("synthetic-tiny:gpt2") == (str(tiny_model_dirs["gpt2"]), "synthetic-tiny:gpt2")
    assert resolve_model("synthetic-tiny") == (str(tiny_model_dirs["llama"]), "synthetic-tiny:llama")

    named = load_model("synthetic-tiny", device="cpu")
    direct = load_model(tiny_model_dirs["llama"], device="cpu")
    assert model_id(named) == "synthetic-tiny:llama", model_id(named)
    tokens = direct.to_tokens("a cat sat")
    with torch.no_grad():
        diff = (named(tokens) - direct(tokens)).abs().max().item()
    assert diff <= LOGIT_TOLERANCE, f"the registered name loads other weights than its directory (max logit diff {diff:.2e})"


def test_a_name_without_a_default_variant_is_labelled_by_its_name(fresh_registry, tiny_model_dirs):
    register_model("synthetic-plain", lambda variant: tiny_model_dirs[variant or "gpt2"])
    assert resolve_model("synthetic-plain") == (str(tiny_model_dirs["gpt2"]), "synthetic-plain")


def test_an_unknown_name_fails_in_one_line_naming_the_registered_ones(fresh_registry):
    register_model("synthetic-known", lambda variant: "/nowhere")
    with pytest.raises(InterpError) as caught:
        load_model("no-such-model:big")
    message = str(caught.value)
    assert message.startswith("no registered model named 'no-such-model' (asked for 'no-such-model:big'); registered: "), message
    assert "organism" in message and "synthetic-known" in message, message
    assert "\n" not in message, message
    with pytest.raises(InterpError, match=r"no registered model named 'nope'.*registered: .*organism"):
        resolve_model("nope")


def test_registering_checks_the_name_and_refuses_a_second_model_under_it(fresh_registry):
    for bad in ("", "has:colon", "org/name", "./dir", "two words"):
        with pytest.raises(InterpError, match="cannot register a model named"):
            register_model(bad, lambda variant: "/nowhere")

    def resolve(variant):
        return "/somewhere"

    register_model("synthetic-once", resolve)
    register_model("synthetic-once", resolve)  # the same registration again (a plugin loaded twice) is fine
    with pytest.raises(InterpError, match=r"a model named 'synthetic-once' is already registered \(by .*resolve\)"):
        register_model("synthetic-once", lambda variant: "/elsewhere")


def test_a_broken_plugin_is_named_with_its_error(fresh_registry, monkeypatch):
    broken = EntryPoint(name="synthetic-broken", value="interp.no_such_module:register", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: (broken,))
    with pytest.raises(InterpError, match=r"the model plugin 'synthetic-broken' \(interp.no_such_module:register, entry point group 'interp.models'\) failed to register: ModuleNotFoundError"):
        load_model("synthetic-broken")


def test_the_organism_is_found_through_the_entry_point():
    points = {point.name: point.value for point in registry._entry_points()}
    assert points.get("organism") == "interp.organisms:register", (
        f"entry points of group {registry.ENTRY_POINT_GROUP!r}: {points}; refresh the install with `pip install -e .`"
    )
    # A fresh interpreter: importing the core loads no organism; asking for one registers it via the entry point.
    script = (
        "import sys\n"
        "from interp.model import registry\n"
        "assert 'interp.organisms' not in sys.modules, 'the model package imported the organisms package'\n"
        "assert 'organism' not in registry._REGISTRY\n"
        "print(registry.resolve_model('organism'))\n"
        "assert 'interp.organisms' in sys.modules and 'organism' in registry._REGISTRY\n"
        "from interp.organisms import organism_path\n"
        "assert registry.resolve_model('organism:default') == (str(organism_path('default')), 'organism:default')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "organism:default" in done.stdout, done.stdout


def test_an_unknown_organism_names_the_bundled_ones():
    with pytest.raises(InterpError, match=r"no bundled organism named 'no-such-organism'.*available: "):
        load_model("organism:no-such-organism")


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", ["model/__init__", "model/loading", "model/registry", "model/pretrained", "model/compat", "model/plain_view",
                                    "model/shortcuts", "data", "sites", "provenance", "errors", "io", "store/readout", "testing", "defaults",
                                    "checks", "distributed", "lazy"])
def test_the_core_imports_no_organism(module):
    """Not even inside a function: the organism reaches the core only through the registry."""
    imported = _imported_modules(REPOSITORY / "interp" / f"{module}.py")
    forbidden = sorted(name for name in imported if name.startswith(("interp.organisms", "interp.commands", "interp.cli", "interp.demo", "interp.experiments")))
    assert not forbidden, f"interp/{module}.py imports {forbidden}"
