"""ActivationStore: activations cached once to disk as sharded safetensors, read memory-mapped.

Layout of a store directory::

    manifest.json            what, from which model and prompts, which shards are finished
    prompts.jsonl            the prompt records, in order
    tokens.safetensors       input_ids [prompt, max_pos] (right-padded) and lengths [prompt]
    readout.safetensors      final norm + unembedding (a logit lens runs from the store alone)
    tokenizer/               the tokenizer, to show token strings without the model
    shards/shard_00000.safetensors ...   {hook name: [prompts in shard, ...]}

>>> store = cache_activations(model, prompts, hooks=["resid_post"], out="acts")   # doctest: +SKIP
>>> store = ActivationStore.open("acts")                                          # doctest: +SKIP
>>> store["blocks.3.hook_resid_post"].shape      # positions="last": [prompt, d_model]  # doctest: +SKIP

Stores are written by ``cache_activations`` (``interp.store.cache``).

Every open checks that each shard is this store's (its store id and index) and agrees with the
manifest; the first time a process reads a hook of a shard, the bytes read are hashed and checked
against the hash recorded when they were written (``check_reads=False`` skips this), so damaged
bytes or a file copied from another store are an error, not data.
"""

import difflib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file
from torch import Tensor

from interp.data import PromptSet
from interp.errors import InterpError
from interp.model import model_id
from interp.model.weights import weights_hash
from interp.provenance import Provenance, warn_if_other_versions
from interp.sites import expand_sites
from interp.store.manifest import (
    PROMPTS,
    REBUILD_SHARD,
    RECREATE,
    SAFETENSORS_DTYPES,
    TOKENS,
    check_files,
    check_prompts,
    check_shard,
    check_tokens,
    file_hash,
    read_manifest,
    tensor_hash,
    verify_shard,  # fmt: skip
)
from interp.store.readout import Readout

logger = logging.getLogger(__name__)

# What this process has read and found intact: (path, inode, mtime, size, hook or "*" for the whole file).
# A file replaced or edited since has another key and is checked again.
_READ_AND_CHECKED: set[tuple[str, int, int, int, str]] = set()


def _mmap_tensor(path: Path, header: dict[str, Any], data_start: int, name: str) -> Tensor:
    entry = header[name]
    begin, end = entry["data_offsets"]
    dtype = SAFETENSORS_DTYPES[entry["dtype"]]
    if end == begin:
        return torch.empty(entry["shape"], dtype=dtype)
    raw = np.memmap(path, dtype=np.uint8, mode="c", offset=data_start + begin, shape=(end - begin,))
    return torch.from_numpy(raw).view(dtype).reshape(entry["shape"])


@dataclass(frozen=True)
class _Shard:
    path: Path
    start: int
    stop: int
    hash: str  # of the whole file
    tensor_hashes: dict[str, str]  # of each hook's bytes (empty in stores of format 1)


def _read_key(path: Path, part: str) -> tuple[str, int, int, int, str]:
    status = path.stat()
    return (str(path.resolve()), status.st_ino, status.st_mtime_ns, status.st_size, part)


class ActivationStore:
    """A directory of cached activations. Open with ``ActivationStore.open(dir)``."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        self.root = root
        self.manifest = manifest
        self._shards = tuple(
            _Shard(root / s["file"], s["start"], s["stop"], s["hash"], s.get("tensor_hashes") or {})
            for s in manifest["shards"]
        )
        self.check_reads = True
        self._headers: dict[Path, tuple[dict[str, Any], int]] = {}
        self._records: list[dict[str, Any]] | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        model=None,
        allow_partial: bool = False,
        verify: bool = False,
        check_reads: bool = True,
    ) -> "ActivationStore":
        """Open a store; with ``model``, check it is the model the store was made with.

        Every open checks what is cheap (the manifest, file sizes, safetensors headers against the
        manifest, each shard's store id and index, the prompts' hash); ``verify=True`` also re-hashes
        every file now (``store.verify()``). ``check_reads`` (default) hashes what is read, the first
        time this process reads it: one pass over bytes that are read anyway (``bench/cache.py``
        measures it). ``allow_partial=True`` opens an interrupted store and exposes its finished shards only.
        """
        root = Path(path)
        manifest = read_manifest(root)
        if manifest["status"] != "complete" and not allow_partial:
            raise InterpError(
                f"the store at {root} is unfinished ({len(manifest['shards'])} shards written); finish it by rerunning "
                "the same `interp cache` command with --resume, or open it with allow_partial=True."
            )
        shards = sorted(manifest["shards"], key=lambda s: s["start"])
        covered = 0
        for shard in shards:
            if shard["start"] != covered:
                if not allow_partial:
                    raise InterpError(
                        f"the store at {root} is missing prompts {covered}..{shard['start']}; rerun with --resume."
                    )
                break
            covered = shard["stop"]
        manifest = {**manifest, "shards": [s for s in shards if s["stop"] <= covered]}
        warn_if_other_versions(manifest.get("versions", {}), what=f"store at {root}")
        store = cls(root, manifest)
        store.check_reads = check_reads
        check_files(root, manifest, full=False)
        check_tokens(root, manifest)
        store._records = check_prompts(root, manifest)
        for entry in manifest["shards"]:
            store._headers[root / entry["file"]] = check_shard(root, manifest, entry)
        if verify:
            store.verify()
        if model is not None:
            store.check_model(model)
        return store

    # ---- metadata ----
    @property
    def hooks(self) -> tuple[str, ...]:
        return tuple(self.manifest["hooks"])

    @property
    def n_prompts(self) -> int:
        """Prompts available (all of them, unless the store is partial)."""
        return self._shards[-1].stop if self._shards else 0

    @property
    def positions(self) -> str | list[int]:
        return self.manifest["positions"]

    @property
    def n_layers(self) -> int:
        return int(self.manifest["n_layers"])

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def weights_hash(self) -> str:
        return self.manifest["weights_hash"]

    @property
    def provenance(self) -> Provenance:
        return Provenance(
            model_id=self.model_id,
            weights_hash=self.weights_hash,
            dataset_hash=self.manifest["prompts_hash"],
            hooks=self.hooks,
            seed=self.manifest.get("seed"),
            interp_version=self.manifest.get("interp_version", ""),
            extra={
                "store": str(self.root),
                "positions": self.positions,
                **({"capture": self.manifest["capture"]} if "capture" in self.manifest else {}),
                # a store computed from another (interp.store.derive): from what, and how
                **({"derived": self.manifest["derived"]} if "derived" in self.manifest else {}),
            },
            versions=self.manifest.get("versions", {}),
        )

    def shape(self, hook: str) -> tuple[int, ...]:
        """Shape of ``store[hook]``: ``(n_prompts, *per-prompt shape)``."""
        self._check_hook(hook)
        return (self.n_prompts, *self.manifest["shapes"][hook])

    @cached_property
    def prompts(self) -> PromptSet:
        rows = self._records if self._records is not None else check_prompts(self.root, self.manifest)
        return PromptSet(tuple(rows[: self.n_prompts]), source=str(self.root / PROMPTS))

    @cached_property
    def _tokens(self) -> dict[str, Tensor]:
        self._check_file(TOKENS)
        return load_file(str(self.root / TOKENS))

    @property
    def input_ids(self) -> Int[Tensor, "prompt pos"]:
        """Right-padded token ids; ``lengths`` says where each prompt ends."""
        return self._tokens["input_ids"][: self.n_prompts]

    @property
    def lengths(self) -> Int[Tensor, " prompt"]:
        return self._tokens["lengths"][: self.n_prompts]

    @cached_property
    def readout(self) -> Readout:
        self._check_file(self.manifest["readout"]["file"])
        return Readout.load(self.root / self.manifest["readout"]["file"])

    @cached_property
    def tokenizer(self):
        from transformers import PreTrainedTokenizerFast

        path = self.root / "tokenizer"
        if not path.exists():
            raise InterpError(
                f"the store at {self.root} has no tokenizer; token strings need the model (pass model=...)."
            )
        return PreTrainedTokenizerFast.from_pretrained(str(path))

    def str_tokens(self, prompt: int) -> list[str]:
        """The token strings of one prompt, decoded one token at a time."""
        ids = self.input_ids[prompt, : int(self.lengths[prompt])].tolist()
        return [self.tokenizer.decode([token]) for token in ids]

    def decode(self, token_ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([int(token)]) for token in token_ids]

    def check_model(self, model) -> None:
        """Raise if ``model`` is not the model (same weights) this store was made with."""
        found = weights_hash(model)
        if found != self.weights_hash:
            raise InterpError(
                f"the store at {self.root} was made with {self.model_id} (weights {self.weights_hash[:12]}), "
                f"but this model is {model_id(model)} (weights {found[:12]}). Use the same model, or re-cache with "
                "this one."
            )

    # ---- tensors ----
    def __contains__(self, hook: str) -> bool:
        return hook in self.manifest["hooks"]

    def __getitem__(self, hook: str) -> Tensor:
        """All prompts' activations at ``hook``, ``[prompt, ...]`` (memory-mapped shards, concatenated)."""
        self._check_hook(hook)
        parts = list(self.iter_shards(hook))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @property
    def shard_ranges(self) -> tuple[tuple[int, int], ...]:
        """The prompts ``(start, stop)`` of each shard, in order: ``read_shard(i, hook)`` holds prompts start..stop."""
        return tuple((shard.start, shard.stop) for shard in self._shards)

    def read_shard(self, index: int, hook: str) -> Tensor:
        """Shard ``index``'s activations at ``hook``, memory-mapped (its bytes checked on first read)."""
        self._check_hook(hook)
        if not 0 <= index < len(self._shards):
            raise InterpError(f"the store at {self.root} has shards 0..{len(self._shards) - 1}, not {index}.")
        shard = self._shards[index]
        header, start = self._header(shard.path)
        if self.check_reads:
            self._check_read(shard, hook, header, start)
        return _mmap_tensor(shard.path, header, start, hook)

    def iter_shards(self, hook: str) -> Iterator[Tensor]:
        """One memory-mapped tensor per shard, in prompt order: stream without loading everything."""
        self._check_hook(hook)
        for index in range(len(self._shards)):
            yield self.read_shard(index, hook)

    def _check_read(self, shard: _Shard, hook: str, header: dict[str, Any], data_start: int) -> None:
        """Hash ``hook``'s bytes in ``shard`` (the whole file in a store of format 1) the first time this process reads
        them; raise if they differ from the hash recorded when they were written."""
        part = hook if shard.tensor_hashes else "*"
        key = _read_key(shard.path, part)
        if key in _READ_AND_CHECKED:
            return
        if shard.tensor_hashes:
            begin, end = header[hook]["data_offsets"]
            found = tensor_hash(
                np.memmap(shard.path, dtype=np.uint8, mode="r", offset=data_start + begin, shape=(end - begin,)).data
                if end > begin
                else b""
            )
            intact = found == shard.tensor_hashes[hook]
        else:
            intact = file_hash(shard.path) == shard.hash
        if not intact:
            what = f"the bytes of {hook} differ" if shard.tensor_hashes else "its content differs"
            raise InterpError(
                f"shard {shard.path} is corrupted: {what} from the hash recorded when it was written; {REBUILD_SHARD}."
            )
        _READ_AND_CHECKED.add(key)

    def _check_file(self, name: str) -> None:
        """Hash the store file ``name`` against the manifest the first time this process reads it."""
        record = (self.manifest.get("files") or {}).get(name)
        path = self.root / name
        if not self.check_reads or not isinstance(record, dict):
            return
        key = _read_key(path, "*")
        if key in _READ_AND_CHECKED:
            return
        if file_hash(path) != record.get("hash"):
            raise InterpError(
                f"the store file {path} is corrupted: its content differs from the hash recorded when it was "
                f"written; {RECREATE}."
            )
        _READ_AND_CHECKED.add(key)

    def stack(self, kind: str = "resid_post") -> Float[Tensor, "layer prompt ..."]:
        """One site across every layer, stacked.

        ``store.stack("resid_post")[l] == store[f"blocks.{l}.hook_resid_post"]``.
        """
        names = expand_sites([kind], self.n_layers)
        missing = [name for name in names if name not in self]
        if missing:
            raise InterpError(f"the store has no {missing[0]}; cache it with --hooks {kind}.")
        return torch.stack([self[name] for name in names])

    def verify(self) -> None:
        """Re-hash every file (shards, tokens, prompts, readout) now; raise naming the first that differs."""
        check_files(self.root, self.manifest, full=True)
        check_tokens(self.root, self.manifest)
        check_prompts(self.root, self.manifest)
        for entry in self.manifest["shards"]:
            verify_shard(self.root, self.manifest, entry)

    def _header(self, path: Path) -> tuple[dict[str, Any], int]:
        return self._headers[path]

    def _check_hook(self, hook: str) -> None:
        if hook not in self.manifest["hooks"]:
            close = difflib.get_close_matches(hook, self.hooks, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise InterpError(
                f"the store at {self.root} has no activations for {hook!r}.{hint} It holds {len(self.hooks)} hooks "
                f"({', '.join(self.hooks[:4])}{', ...' if len(self.hooks) > 4 else ''}); re-cache to add others."
            )

    def __repr__(self) -> str:
        return (
            f"ActivationStore({str(self.root)!r}, model={self.model_id!r}, prompts={self.n_prompts}, "
            f"hooks={len(self.hooks)}, positions={self.positions!r})"
        )
