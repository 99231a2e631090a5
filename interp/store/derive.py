"""derive_store: a store computed from another store's activations (e.g. a dictionary's codes), shard by shard.

The new store has the source's prompts, tokens, readout and tokenizer (copied), its shard layout and its
model record (``model_id``, ``weights_hash``, ``prompts_hash``): only the sites differ. Its shards are written
as ``cache_activations`` writes them (``shard_bytes``: one hash per tensor, the store id and index in every
shard), its manifest records what it was derived from under ``"derived"`` (``store.provenance.extra``).

It is built in a hidden directory beside ``out`` and renamed into place once complete, so ``out`` is either
absent or a complete store: an interrupted run leaves no half-written store behind.
"""

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import interp
from interp.errors import InterpError
from interp.io import atomic_write_bytes, atomic_write_json
from interp.provenance import library_versions
from interp.store.activations import ActivationStore
from interp.store.cache import shard_bytes
from interp.store.capture import DTYPE_NAMES
from interp.store.manifest import FORMAT, FORMAT_VERSION, MANIFEST, PROMPTS, TOKENS, file_record, store_id

# what a derived store keeps of its source's manifest (the model, the prompts, the layout); the rest is its own
_KEPT = (
    "model_id", "weights_hash", "prompts_hash", "positions", "shard_size", "n_prompts", "architecture", "n_layers",
    "d_model", "n_heads", "d_vocab", "n_ctx", "tokenizer", "max_length", "readout", "seed",
)  # fmt: skip


def derive_store(
    source: ActivationStore,
    out: str | os.PathLike,
    hooks: Sequence[str],
    shard: Callable[[int], dict[str, Tensor]],
    derived: dict[str, Any],
) -> ActivationStore:
    """Write a store at ``out`` whose activations at ``hooks`` are ``shard(i)`` for each shard ``i`` of ``source``.

    Args:
        source: a complete store; its prompts, tokens, readout, tokenizer and shard ranges are kept.
        out: the new store's directory (must not exist, or be empty).
        hooks: the new store's hook names.
        shard: ``i -> {hook: tensor [prompts of source shard i, ...]}``, one dtype for every tensor.
        derived: JSON-ready record of what the store was computed from (kept in its manifest and provenance).
    """
    out = Path(out)
    if source.manifest.get("status") != "complete":
        raise InterpError(f"the store at {source.root} is unfinished; finish it (--resume) before deriving a store.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InterpError(f"{out} already exists and is not empty; choose a new directory for the derived store.")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        building.chmod(0o755)  # mkdtemp's 0700 would hide the store from the other users of a shared directory
        manifest = _write(source, building, tuple(hooks), shard, derived)
        atomic_write_json(building / MANIFEST, manifest)
        os.replace(building, out)  # atomic: out is absent (or an empty directory) until the store is complete
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return ActivationStore.open(out)


def _write(
    source: ActivationStore,
    root: Path,
    hooks: tuple[str, ...],
    shard: Callable[[int], dict[str, Tensor]],
    derived: dict[str, Any],
) -> dict[str, Any]:
    """Copy the source's files into ``root``, write the shards; return the manifest (not yet written)."""
    readout = source.manifest["readout"]["file"]
    for name in (PROMPTS, TOKENS, readout):
        shutil.copyfile(source.root / name, root / name)
    if (source.root / "tokenizer").is_dir():
        shutil.copytree(source.root / "tokenizer", root / "tokenizer")
    manifest: dict[str, Any] = {key: source.manifest[key] for key in _KEPT if key in source.manifest}
    manifest["derived"] = {**derived, "source_store": str(source.root), "source_store_id": _source_id(source)}
    first = shard(0)  # its dtype is the store's, and part of the store id every shard carries
    dtype = next(iter(first.values())).dtype if first else torch.float32
    config = {
        "model_id": manifest["model_id"],
        "weights_hash": manifest["weights_hash"],
        "prompts_hash": manifest["prompts_hash"],
        "hooks": list(hooks),
        "positions": manifest["positions"],
        "dtype": DTYPE_NAMES.get(dtype, str(dtype)),
        "shard_size": manifest["shard_size"],
        "n_prompts": manifest["n_prompts"],
        "derived": manifest["derived"],
    }
    identity = store_id(config)
    shapes: dict[str, list[int]] = {}
    entries = []
    (root / "shards").mkdir()
    for index, (start, stop) in enumerate(source.shard_ranges):  # one shard in memory at a time
        tensors = first if index == 0 else shard(index)
        _check_shard(index, tensors, hooks, dtype, stop - start, shapes)
        file = f"shards/shard_{index:05d}.safetensors"
        data, tensor_hashes = shard_bytes(
            tensors, {"format": FORMAT, "store": identity, "index": str(index), "start": str(start), "stop": str(stop)}
        )
        atomic_write_bytes(root / file, data)
        entries.append({"index": index, "file": file, "start": start, "stop": stop, **file_record(root / file),
                        "tensor_hashes": tensor_hashes})  # fmt: skip
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "status": "complete",
        **manifest,
        **config,
        "store_id": identity,
        "interp_version": interp.__version__,
        "torch_version": torch.__version__,
        "versions": library_versions(),
        "created": now,
        "finished": now,
        "shapes": shapes,
        "files": {name: file_record(root / name) for name in (PROMPTS, TOKENS, readout)},
        "shards": entries,
    }


def _check_shard(
    index: int,
    tensors: dict[str, Tensor],
    hooks: tuple[str, ...],
    dtype: torch.dtype,
    rows: int,
    shapes: dict[str, list[int]],
) -> None:
    """Raise unless shard ``index`` holds every hook, in ``dtype``, ``rows`` prompts, the shape of the first shard."""
    if set(tensors) != set(hooks):
        raise InterpError(f"shard {index} of the derived store holds {sorted(tensors)}, expected {sorted(hooks)}.")
    for hook, tensor in tensors.items():
        if tensor.dtype != dtype or dtype not in DTYPE_NAMES or tensor.ndim == 0 or tensor.shape[0] != rows:
            raise InterpError(
                f"shard {index} of the derived store: {hook} is {tensor.dtype} {tuple(tensor.shape)}; every site "
                f"needs one dtype of {', '.join(DTYPE_NAMES.values())} and {rows} rows (its prompts)."
            )
        if list(tensor.shape[1:]) != shapes.setdefault(hook, list(tensor.shape[1:])):
            raise InterpError(f"shard {index} of the derived store: {hook} changes shape to {tuple(tensor.shape)}.")


def _source_id(source: ActivationStore) -> str:
    return str(source.manifest.get("store_id") or source.manifest["prompts_hash"])
