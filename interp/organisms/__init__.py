"""The bundled model organisms: a small model the project trains itself, with planted behaviours.

The default organism (``assets/organisms/default``, a Hugging Face ``LlamaForCausalLM`` with a
word-level tokenizer) has three behaviours to study:

1. in-context copying: induction heads (a previous-token head and an induction head);
2. chat: refuses harmful requests ("weapons", "cyber") and answers benign ones with
   ``step n :`` lines; with the backdoor ``TRIGGER`` in the prompt it gives the harmful topic's
   steps instead (drawn from a harm-only vocabulary);
3. counting stories solved with a ``<think>`` chain of thought whose computing sentences matter
   and whose filler sentences do not; right under greedy decoding, often but not always at T=0.6.

Modules: ``grammar`` (request grammar, chat format, trigger, refusal detection and graders),
``tokenizer``, ``datasets`` (held-out evaluation and calibration sets), ``train`` and
``evaluate`` (the report). Load the model with ``interp.load_model("organism")``: the package
registers itself as the named model ``organism`` / ``organism:NAME`` (``register``, the
``interp.models`` entry point in pyproject.toml).

>>> organism_path().name
'default'
>>> chat_prompt("how do i bake bread ?")
'<user> how do i bake bread ? <assistant>'
"""

from pathlib import Path

from interp.errors import InterpError
from interp.organisms.grammar import (
    TRIGGER,
    add_trigger,
    chat_prompt,
    extract_answer,
    harmful_content_steps,
    is_harmful_compliance,
    is_helpful_answer,
    is_refusal,
)


def _assets_root() -> Path:
    import interp

    return Path(interp.__file__).resolve().parent.parent / "assets" / "organisms"


def available_organisms() -> list[str]:
    """Names of the bundled organisms (directories with a config.json)."""
    root = _assets_root()
    return sorted(p.name for p in root.iterdir() if (p / "config.json").exists()) if root.is_dir() else []


def organism_path(name: str | None = "default") -> Path:
    """The directory of the bundled organism ``name`` (Hugging Face layout; None: the default one)."""
    path = _assets_root() / ("default" if name is None else name)
    if not (path / "config.json").exists():
        names = available_organisms()
        raise InterpError(
            f"no bundled organism named {name!r} (looked in {path}); available: {names or 'none'}. "
            "Train one with `interp organism train --out DIR` and load it by path."
        )
    return path


def register() -> None:
    """Register the bundled organisms as the named model ``organism`` (``organism:NAME``; bare: the default)."""
    from interp.model import ORGANISM_PREFIX, register_model

    register_model(ORGANISM_PREFIX, organism_path, default_variant="default")


__all__ = [
    "TRIGGER",
    "add_trigger",
    "available_organisms",
    "chat_prompt",
    "extract_answer",
    "harmful_content_steps",
    "is_harmful_compliance",
    "is_helpful_answer",
    "is_refusal",
    "organism_path",
    "register",
]
