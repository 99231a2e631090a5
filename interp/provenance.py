"""Provenance: where a result came from (model, weights, data, sites, seed, library versions).

Every result and every store carries one, so a number can always be traced back and a
store or probe is never silently applied to a different model. Loading one made under other
versions of torch, transformers, transformer_lens or interp warns once, naming them.
"""

import functools
import hashlib
import json
import subprocess
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import interp
from interp.errors import InterpError

VERSIONED_PACKAGES = ("interp", "torch", "transformers", "transformer_lens")
_WARNED_VERSION_DIFFERENCES: set[str] = set()
_ACTIVE_WORKAROUNDS: list[
    str
] = []  # names of the dependency workarounds installed in this process (interp.model.compat)


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of interp, torch, transformers and transformer_lens; the git commit when run from a checkout."""
    versions = {"interp": interp.__version__}
    for package in VERSIONED_PACKAGES[1:]:
        try:
            versions[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    commit = _git_commit(Path(interp.__file__).resolve().parents[1])
    if commit:
        versions["git_commit"] = commit
    return versions


@dataclass(frozen=True)
class Provenance:
    """What a result was computed from."""

    model_id: str
    weights_hash: str
    dataset_hash: str = ""
    hooks: tuple[str, ...] = ()
    seed: int | None = None
    interp_version: str = interp.__version__
    extra: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=lambda: library_versions())
    workarounds: tuple[str, ...] = field(default_factory=lambda: tuple(active_workarounds()))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hooks"] = list(self.hooks)
        data["extra"] = dict(self.extra)
        data["versions"] = dict(self.versions)
        data["workarounds"] = list(self.workarounds)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Provenance":
        """Rebuild a saved provenance; warns once if it was made under other library versions.

        A provenance saved before versions were recorded loads with empty ``versions``.
        """
        known = {
            k: data[k] for k in ("model_id", "weights_hash", "dataset_hash", "seed", "interp_version") if k in data
        }
        versions = {str(k): str(v) for k, v in dict(data.get("versions", {})).items()}
        warn_if_other_versions(versions, what=f"result of {data.get('model_id', 'an unknown model')}")
        return cls(
            hooks=tuple(data.get("hooks", ())),
            extra=dict(data.get("extra", {})),
            versions=versions,
            workarounds=tuple(data.get("workarounds", ())),
            **known,
        )


def active_workarounds() -> list[str]:
    """The names of the dependency workarounds installed in this process (``interp.model.compat.install``)."""
    return list(_ACTIVE_WORKAROUNDS)


def record_workaround(name: str) -> None:
    """Note that the workaround ``name`` is installed: every provenance made from now on lists it."""
    if name not in _ACTIVE_WORKAROUNDS:
        _ACTIVE_WORKAROUNDS.append(name)


def version_differences(recorded: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """``{package: (recorded, installed)}`` for every versioned package whose recorded version differs."""
    installed = library_versions()
    return {
        package: (recorded[package], installed.get(package, "not installed"))
        for package in VERSIONED_PACKAGES
        if package in recorded and recorded[package] != installed.get(package, "not installed")
    }


def warn_if_other_versions(recorded: Mapping[str, str], what: str = "result") -> None:
    """Warn (once per distinct difference) that ``recorded`` versions differ from the installed ones."""
    differences = version_differences(recorded)
    if not differences:
        return
    text = ", ".join(f"{package} {saved} (installed: {now})" for package, (saved, now) in sorted(differences.items()))
    if text in _WARNED_VERSION_DIFFERENCES:
        return
    _WARNED_VERSION_DIFFERENCES.add(text)
    warnings.warn(f"this {what} was made under {text}; numbers may differ under the installed versions.", stacklevel=3)


def _git_commit(root: Path) -> str:
    if not (root / ".git").exists():
        return ""
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def hash_bytes(chunks: Iterable[bytes | bytearray | memoryview]) -> str:
    """A short, stable content hash (blake2b, 16 bytes, hex)."""
    digest = hashlib.blake2b(digest_size=16)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def hash_json(obj: Any) -> str:
    """Hash of the canonical JSON of ``obj`` (sorted keys)."""
    return hash_bytes([json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()])


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw bytes of a tensor (any dtype, bf16 included), on the CPU."""
    flat = tensor.detach().contiguous().cpu().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def directory_weights_hash(directory: str | Path) -> str:
    """Content hash of a Hugging Face directory's weights as stored (every tensor of its safetensors files:
    name, shape, dtype, values), for backends that load the weights themselves (vLLM).

    Not the number ``weights_hash`` gives for the loaded model: that hashes the modules, whose
    parameters differ from the files (dtype on load, tensors the loader adds such as a zero unembedding bias).
    """
    from safetensors import safe_open

    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise InterpError(
            f"{directory} holds no *.safetensors weights; "
            "save the model with save_pretrained(dir, safe_serialization=True)."
        )
    handles = [safe_open(str(path), framework="pt") for path in files]
    names = sorted((name, index) for index, handle in enumerate(handles) for name in handle.keys())

    def chunks() -> Iterable[bytes]:
        for name, index in names:
            tensor = handles[index].get_tensor(name)
            yield f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode()
            yield tensor_bytes(tensor)

    return hash_bytes(chunks())
