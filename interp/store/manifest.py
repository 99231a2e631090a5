"""The activation store's manifest and the checks that a store directory is what its manifest says.

Cheap checks run on every open (the manifest's structure, every file inside the store, sizes,
safetensors headers against the manifest's hooks, dtype and shapes, the prompts' hash); the full
check (every file re-hashed) runs on ``--resume``, ``interp store verify DIR`` and
``ActivationStore.open(..., verify=True)``. Whatever is wrong is one InterpError naming the file.
"""

import json
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import xxhash

from interp.checks import STORE_MANIFEST_FORMAT
from interp.errors import InterpError
from interp.io import inside, read_jsonl
from interp.provenance import hash_bytes, hash_json
from interp.store.capture import DTYPE_NAMES

FORMAT = STORE_MANIFEST_FORMAT  # "interp.activation_store"
FORMAT_VERSION = 2  # 2: a store id and shard index in every shard, a hash per tensor (checked on first read)
MANIFEST = "manifest.json"
PROMPTS, TOKENS = "prompts.jsonl", "tokens.safetensors"
RECREATE = "re-create the store with `interp cache` into a new --out"
REBUILD_SHARD = "rerun the same `interp cache` command with --resume to rebuild it"

SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_CODES = {
    name: next(code for code, dtype in SAFETENSORS_DTYPES.items() if dtype == value)
    for value, name in DTYPE_NAMES.items()
}
# key -> its JSON type, for every key the store reads
_KEYS = {
    "status": str, "shards": list, "hooks": list, "shapes": dict, "n_prompts": int, "n_layers": int, "dtype": str,
    "prompts_hash": str, "model_id": str, "weights_hash": str, "readout": dict, "shard_size": int, "max_length": int,
}  # fmt: skip
_SHARD_KEYS = {"index": int, "file": str, "start": int, "stop": int, "hash": str}


def read_manifest(root: Path) -> dict[str, Any]:
    """The checked manifest of the store at ``root``; InterpError for anything that is not a well-formed one."""
    path = root / MANIFEST
    if not path.is_file():
        raise InterpError(f"{root} is not an activation store (no {MANIFEST}); create one with `interp cache`.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise InterpError(f"{path} is corrupted ({error}); {RECREATE}.") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InterpError(f"{path} is not an interp activation-store manifest.")
    version = manifest.get("format_version", 0)
    if not _is(version, int):
        raise InterpError(f"{path} has format_version {version!r}, not a number; {RECREATE}.")
    if version > FORMAT_VERSION:
        raise InterpError(f"{root} was written by a newer interp (format {version}); upgrade interp.")
    _check_manifest(root, manifest)
    return manifest


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _check_manifest(root: Path, manifest: dict[str, Any]) -> None:
    def bad(what: str) -> InterpError:
        return InterpError(f"{root / MANIFEST} is damaged: {what}; {RECREATE} (or restore the file).")

    version = manifest.get("format_version", 0)
    if version >= 2 and not isinstance(manifest.get("store_id"), str):
        raise bad("it has no 'store_id' (the id every shard of the store carries)")
    for key, kind in _KEYS.items():
        if key not in manifest:
            raise bad(f"it has no {key!r}")
        if not _is(manifest[key], kind):
            raise bad(f"{key!r} is {type(manifest[key]).__name__} {manifest[key]!r:.60}, not {kind.__name__}")
    if manifest["status"] not in ("in_progress", "complete"):
        raise bad(f"unknown status {manifest['status']!r}")
    if manifest["dtype"] not in _CODES:
        raise bad(f"unknown dtype {manifest['dtype']!r} (known: {', '.join(_CODES)})")
    n_prompts, shard_size = manifest["n_prompts"], manifest["shard_size"]
    if n_prompts < 1 or shard_size < 1 or manifest["max_length"] < 1:
        raise bad("n_prompts, shard_size and max_length must be at least 1")
    hooks = manifest["hooks"]
    if not hooks or not all(isinstance(hook, str) for hook in hooks) or len(set(hooks)) != len(hooks):
        raise bad("'hooks' must be distinct hook names")
    positions = manifest.get("positions")
    if positions not in ("last", "all") and not (
        isinstance(positions, list) and positions and all(_is(p, int) for p in positions)
    ):
        raise bad(f"unknown positions {positions!r}")
    for hook, shape in manifest["shapes"].items():
        if hook not in hooks or not isinstance(shape, list) or not all(_is(n, int) and n >= 0 for n in shape):
            raise bad(f"the shape of {hook!r} is {shape!r}")
    versions = manifest.get("versions", {})
    if not isinstance(versions, dict) or not all(isinstance(value, str) for value in versions.values()):
        raise bad("'versions' must map each library to the version the store was made under")
    inside(root, manifest["readout"].get("file"), "the readout file")
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(
        isinstance(record, dict) and _is(record.get("size"), int) and isinstance(record.get("hash"), str)
        for record in files.values()
    ):
        raise bad("'files' must map each file of the store to its size and hash")
    seen: set[int] = set()
    for entry in manifest["shards"]:
        if not isinstance(entry, dict) or any(not _is(entry.get(key), kind) for key, kind in _SHARD_KEYS.items()):
            raise bad(f"shard entry {entry!r:.80} lacks one of {', '.join(_SHARD_KEYS)}")
        inside(root, entry["file"], "the shard file")
        index = entry["index"]
        expected = (index * shard_size, min((index + 1) * shard_size, n_prompts))
        if index in seen or (entry["start"], entry["stop"]) != expected or expected[0] >= n_prompts:
            raise bad(
                f"shard {index} covers prompts {entry['start']}..{entry['stop']}, not {expected[0]}..{expected[1]}"
            )
        if set(manifest["shapes"]) != set(hooks):
            raise bad("a shard is listed but not every hook has a shape")
        if version >= 2 and not (
            isinstance(entry.get("tensor_hashes"), dict)
            and set(entry["tensor_hashes"]) == set(hooks)
            and all(isinstance(value, str) for value in entry["tensor_hashes"].values())
        ):
            raise bad(f"shard {index} does not record one hash per hook ('tensor_hashes')")
        seen.add(index)
    if manifest["status"] == "complete" and len(seen) * shard_size < n_prompts:
        raise bad(f"it says complete but lists {len(seen)} shards for {n_prompts} prompts")


def read_header(path: Path, what: str = "shard") -> tuple[dict[str, Any], int]:
    """The safetensors header and the byte offset where tensor data starts; raises naming the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (header_length,) = struct.unpack("<Q", handle.read(8))
            if header_length > size - 8:
                raise ValueError(f"header claims {header_length} bytes but the file has {size}")
            header = json.loads(handle.read(header_length))
        if not isinstance(header, dict):
            raise ValueError("the header is no JSON object")
        metadata = header.get("__metadata__", {})
        if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
            raise ValueError("its __metadata__ is not a table of strings")
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            if (
                not isinstance(entry, dict)
                or entry.get("dtype") not in SAFETENSORS_DTYPES
                or not isinstance(entry.get("shape"), list)
            ):
                raise ValueError(f"tensor {key!r} has no known dtype and shape")
            if not all(_is(n, int) and n >= 0 for n in entry["shape"]):
                raise ValueError(f"tensor {key!r} has shape {entry['shape']!r:.60}, not a list of sizes")
            begin, end = entry.get("data_offsets", (None, None))
            count = 1
            for n in entry["shape"]:
                count *= n
            if (
                not (_is(begin, int) and _is(end, int) and 0 <= begin <= end)
                or end - begin != count * SAFETENSORS_DTYPES[entry["dtype"]].itemsize
            ):
                raise ValueError(
                    f"tensor {key!r} has data offsets {entry.get('data_offsets')} that do not fit its shape "
                    f"{entry['shape']}"
                )
        _check_offsets_tile(header)
    except FileNotFoundError:
        raise InterpError(f"{what} {path} is missing; {REBUILD_SHARD}.") from None
    except (ValueError, TypeError, struct.error, UnicodeDecodeError, RecursionError) as error:
        raise InterpError(f"{what} {path} is corrupted ({error}); {REBUILD_SHARD}.") from error
    data_start = 8 + header_length
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if data_start + end != size:
        state = "truncated" if data_start + end > size else "corrupted (extra bytes)"
        raise InterpError(
            f"{what} {path} is {state} ({size} bytes, its header says {data_start + end}); {REBUILD_SHARD}."
        )
    return header, data_start


def _check_offsets_tile(header: dict[str, Any]) -> None:
    """The tensors' data lie back to back from byte 0, no gap and no overlap (what safetensors itself requires)."""
    spans = sorted((*tuple(entry["data_offsets"]), key) for key, entry in header.items() if key != "__metadata__")
    position = 0
    for begin, end, key in spans:
        if begin != position:
            raise ValueError(
                f"tensor {key!r} starts at data byte {begin}, not {position} (the tensors' data overlap or leave a gap)"
            )
        position = end


def tensor_hash(data: bytes | bytearray | memoryview) -> str:
    """The hash of one tensor's bytes in a shard, checked the first time a process reads them.

    xxh3-128 (about 29 GiB/s on one core, against blake2b's 1.4): it guards against damage and
    misplaced files, at the speed of the read itself; the manifest's blake2b file hashes remain
    for ``verify``.
    """
    return "xxh3-128:" + xxhash.xxh3_128(data).hexdigest()


def store_id(config: dict[str, Any]) -> str:
    """The id of the store that ``config`` (model, weights, prompts, hooks, positions, dtype, shard size) makes.

    It is a hash of what decides the store's content, so a resumed run and every rank of a torchrun
    run agree on it without talking, and a shard of any other store (other prompts, another order,
    another model) carries another id.
    """
    return hash_json({"format_version": FORMAT_VERSION, **config})


def check_shard(root: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The header of shard ``entry``, checked against the manifest: that it is this store's shard (its store id and
    index), its size, hooks, dtype and shapes, and the prompts it holds."""
    path = root / entry["file"]
    header, data_start = read_header(path)
    problem = _size_problem(path, entry.get("size"))
    meta = header.get("__metadata__") or {}
    if problem is None and "store_id" in manifest and meta.get("store") != manifest["store_id"]:
        problem = (
            f"it belongs to the store {meta.get('store')}, not to this one ({manifest['store_id']}): "
            "a file copied from another store"
        )
    if problem is None and (str(meta.get("start")), str(meta.get("stop"))) != (str(entry["start"]), str(entry["stop"])):
        problem = (
            f"it holds prompts {meta.get('start')}..{meta.get('stop')}, "
            f"the manifest says {entry['start']}..{entry['stop']} (files swapped?)"
        )
    if problem is None and "store_id" in manifest and meta.get("index") != str(entry["index"]):
        problem = f"it says it is shard {meta.get('index')}, the manifest lists it as shard {entry['index']}"
    for hook in manifest["hooks"] if problem is None else ():
        wanted = [entry["stop"] - entry["start"], *manifest["shapes"][hook]]
        found_entry = header.get(hook)
        if found_entry is None or found_entry["dtype"] != _CODES[manifest["dtype"]] or found_entry["shape"] != wanted:
            shown = None if found_entry is None else (found_entry["dtype"], found_entry["shape"])
            problem = f"{hook} is {shown}, the manifest says {(_CODES[manifest['dtype']], wanted)}"
            break
    if problem is not None:
        raise InterpError(f"shard {path} is corrupted: {problem}; {REBUILD_SHARD}.")
    return header, data_start


def check_tokens(root: Path, manifest: dict[str, Any]) -> None:
    """``tokens.safetensors`` holds int64 input_ids [n_prompts, max_length] and lengths [n_prompts]."""
    path = root / TOKENS
    header, _ = _store_file(path, lambda: read_header(path, what="the store file"))
    n = manifest["n_prompts"]
    for name, shape in (("input_ids", [n, manifest["max_length"]]), ("lengths", [n])):
        entry = header.get(name)
        if entry is None or entry["dtype"] != "I64" or entry["shape"] != shape:
            raise InterpError(
                f"{path} is corrupted: {name} is {entry and (entry['dtype'], entry['shape'])}, expected int64 "
                f"{shape}; {RECREATE}."
            )


def check_prompts(root: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of ``prompts.jsonl``, checked against the manifest's count and prompts hash."""
    path = root / PROMPTS
    records = _store_file(path, lambda: read_jsonl(path, hint=RECREATE))
    if len(records) != manifest["n_prompts"]:
        raise InterpError(
            f"{path} holds {len(records)} prompts, the manifest says {manifest['n_prompts']} (truncated or edited); "
            f"{RECREATE}."
        )
    try:
        prompts_hash = hash_json(records)
    except UnicodeEncodeError as error:  # a "\ud800" escape: valid JSON, but no character
        raise InterpError(
            f"{path} holds a lone surrogate escape ({error.object[error.start]!r}) that no prompt can contain (edited "
            f"or corrupted); {RECREATE}."
        ) from None
    if prompts_hash != manifest["prompts_hash"]:
        raise InterpError(
            f"{path} does not match the prompts hash of {root / MANIFEST} (edited or corrupted: labels or texts "
            f"changed); {RECREATE}."
        )
    return records


def _store_file(path: Path, read):
    try:
        return read()
    except InterpError as error:
        if not path.exists():
            raise InterpError(f"the store file {path} is missing; {RECREATE}.") from None
        raise InterpError(str(error).replace(REBUILD_SHARD, RECREATE)) from None


def file_record(path: Path) -> dict[str, Any]:
    """What the manifest records of a finished file: its size and hash."""
    return {"size": path.stat().st_size, "hash": file_hash(path)}


class PendingFile:
    """A file written by a background thread while the caller goes on (the store's readout is written while
    the first batches run); :meth:`record` waits for it and gives its ``file_record`` or raises its error."""

    def __init__(self, path: Path, write: Callable[[Path], None]):
        self.path = path
        self._record: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(write,), name=f"interp write {path.name}", daemon=False)
        self._thread.start()

    def _run(self, write: Callable[[Path], None]) -> None:
        try:
            write(self.path)
            self._record = file_record(self.path)
        except BaseException as error:
            self._error = error

    def wait(self) -> None:
        self._thread.join()

    def record(self) -> dict[str, Any]:
        self.wait()
        if self._error is not None:
            raise self._error
        assert self._record is not None
        return self._record


def settle_files(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with every ``PendingFile`` among its files replaced by its record (waiting for it)."""
    files = manifest.get("files") or {}
    for name, record in files.items():
        if isinstance(record, PendingFile):
            files[name] = record.record()
    return manifest


def wait_for_files(manifest: dict[str, Any]) -> None:
    """Wait for every ``PendingFile`` of ``manifest`` to finish, without raising (the store's lock goes after)."""
    for record in (manifest.get("files") or {}).values():
        if isinstance(record, PendingFile):
            record.wait()


def check_files(root: Path, manifest: dict[str, Any], full: bool) -> None:
    """Every recorded file (tokens, prompts, readout) has its recorded size; with ``full``, its hash."""
    for name, record in (manifest.get("files") or {}).items():
        path = inside(root, name, "the store file")
        problem = _size_problem(path, record.get("size") if isinstance(record, dict) else None)
        if problem is None and full and file_hash(path) != record.get("hash"):
            problem = "its content does not match its recorded hash"
        if problem is not None:
            raise InterpError(
                f"the store file {path} is {'missing' if problem == 'it is missing' else 'corrupted: ' + problem}; "
                f"{RECREATE}."
            )


def verify_shard(root: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> None:
    """The full check of one shard: header, size, and content hash."""
    check_shard(root, manifest, entry)
    path = root / entry["file"]
    if file_hash(path) != entry["hash"]:
        raise InterpError(f"shard {path} does not match its recorded hash (corrupted); {REBUILD_SHARD}.")


def _size_problem(path: Path, size: Any) -> str | None:
    if not path.is_file():
        return "it is missing"
    if size is not None and path.stat().st_size != size:
        return f"it has {path.stat().st_size} bytes, the manifest records {size}"
    return None


def file_hash(path: Path) -> str:
    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                yield chunk

    return hash_bytes(chunks())
