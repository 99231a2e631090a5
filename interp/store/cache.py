"""cache_activations: run a model over prompts and write an activation store (see ``interp.store.activations``).

Every file is written atomically and the manifest lists a shard only once it is complete, so a
run killed at any point loses no finished shard; ``resume=True`` continues it.

Under torchrun (``interp.distributed``) the ranks take the shards round-robin: rank 0 holds the
lock and writes the manifest, each rank lists the shards it finished in its own progress file
(``.interp.rank{R}.json``), and rank 0 merges them after a barrier. The shard files and the
final manifest are those a single process writes.
"""

import contextlib
import json
import logging
import math
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import interp
from interp import defaults, distributed
from interp.checks import check_numbers
from interp.data import PromptSet, iter_batches, pad_token_id, token_chunks, tokenize_prompts, within_budget
from interp.directories import exclusive_lock
from interp.errors import InterpError
from interp.io import atomic_write_bytes, atomic_write_json, atomic_write_safetensors
from interp.model import model_id
from interp.model.weights import weights_hash
from interp.progress import tqdm
from interp.provenance import library_versions, tensor_bytes
from interp.sites import expand_sites
from interp.store.activations import ActivationStore
from interp.store.capture import (
    DTYPE_NAMES,
    Capturer,
    Positions,
    check_model_has,
    normalize_positions,
    resolve_storage_dtype,
)
from interp.store.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PROMPTS,
    SAFETENSORS_DTYPES,
    TOKENS,
    PendingFile,
    check_files,
    check_prompts,
    check_tokens,
    file_record,
    read_manifest,
    settle_files,
    store_id,
    tensor_hash,
    verify_shard,  # fmt: skip
    wait_for_files,
)
from interp.store.readout import Readout

logger = logging.getLogger(__name__)

LOCK = ".interp.lock"  # held by the process writing a store (rank 0 of a torchrun run)
RANK_PROGRESS = ".interp.rank{rank}.json"  # under torchrun: the shards one rank finished, until rank 0 merges them
# what `_start_store` writes before the manifest exists: a directory holding only these is an interrupted start
_START_FILES = {PROMPTS, TOKENS, "readout.safetensors", "tokenizer", ".tokenizer.tmp", "shards", LOCK}


# ---- writing ---------------------------------------------------------------------------------


def cache_activations(
    model,
    prompts: PromptSet | Sequence[str],
    hooks: Sequence[str] = ("resid_post",),
    positions: Positions = "last",
    out: str | os.PathLike = "activations",
    batch_size: int = defaults.CACHE_BATCH_SIZE,
    dtype: str | torch.dtype | None = None,
    shard_size: int | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    fast: bool = True,
    chunk_tokens: int | None = None,
    max_tokens: int | None = None,
) -> "ActivationStore":
    """Run ``model`` over ``prompts`` and stream the activations at ``hooks`` to a store at ``out``.

    Args:
        model: a TransformerBridge (see ``interp.load_model``).
        prompts: a PromptSet or a list of strings.
        hooks: hook names or shorthands (``"resid_post"`` = every layer's ``hook_resid_post``).
        positions: "last" (each prompt's own last token), "all" (right-padded to the longest
            prompt; ``store.lengths`` says where each prompt ends) or explicit positions
            (negative counts from each prompt's end: ``[-2, -1]``).
        out: the store directory.
        batch_size: prompts per forward pass.
        dtype: storage dtype ("float32", "bfloat16", "float16"); default: the model's.
        shard_size: prompts per shard file (default: 8 batches).
        resume: continue an interrupted run in ``out`` (finished shards are kept). A run started
            by N torchrun ranks resumes with N ranks.
        seed: recorded in the manifest (caching itself is deterministic).
        fast: read residual-stream sites from a plain Hugging Face model sharing the bridge's tensors
            where it gives the bridge's values (``interp.store.capture.Capturer``; False: always the bridge).
            ``store.manifest["capture"]`` says which ran and why.
        chunk_tokens: cut each prompt's tokens into pieces of this many (BOS included), each piece a prompt of
            the store: long documents as a corpus (``interp.data.token_chunks``).
        max_tokens: keep the first prompts (or pieces) whose tokens reach this budget (``within_budget``).
    """
    out = Path(out)
    prompt_set = prompts if isinstance(prompts, PromptSet) else PromptSet.from_texts(list(prompts))
    n_layers = int(model.cfg.n_layers)
    hook_names = expand_sites(hooks, n_layers)
    if not hook_names:
        raise InterpError(
            "no hooks to cache: give at least one hook name or shorthand, e.g. --hooks resid_post "
            "(hooks=['resid_post'] in Python)."
        )
    check_model_has(model, hook_names)
    if chunk_tokens is not None:  # long documents as pieces of chunk_tokens tokens
        prompt_set, token_lists = token_chunks(model, prompt_set, chunk_tokens)
    else:
        token_lists = tokenize_prompts(model, prompt_set)
    if max_tokens is not None:
        prompt_set, token_lists = within_budget(prompt_set, token_lists, max_tokens)
    lengths = torch.tensor([len(ids) for ids in token_lists])
    max_length = int(lengths.max())
    position_spec = normalize_positions(positions, lengths)
    storage_dtype = resolve_storage_dtype(dtype, model)
    check_numbers({"batch_size": batch_size, "shard_size": shard_size})
    shard_size = int(batch_size * 8 if shard_size is None else shard_size)
    shard_size = max(batch_size, shard_size - shard_size % batch_size)  # whole batches per shard

    config = {
        "model_id": model_id(model),
        "weights_hash": weights_hash(model),
        "prompts_hash": prompt_set.hash,
        "hooks": list(hook_names),
        "positions": position_spec,
        "dtype": DTYPE_NAMES[storage_dtype],
        "shard_size": shard_size,
        "n_prompts": len(prompt_set),
    }
    world = distributed.current_world()
    if world.is_distributed:
        n_shards = math.ceil(len(prompt_set) / shard_size)
        distributed.check_enough_work(
            world,
            n_shards,
            f"shards ({len(prompt_set)} prompts, {shard_size} per shard)",
            fix=", or pass a smaller --shard-size",
        )
        distributed.ensure_process_group(world, model.cfg.device)
    with contextlib.ExitStack() as held:

        def prepare() -> dict[str, Any]:  # on rank 0 only: the lock, the checks, the start of the store
            held.enter_context(exclusive_lock(out, LOCK, what="activation store"))
            manifest = _prepare_directory(out, config, resume, world.size)
            if manifest is None:
                manifest = _start_store(out, model, prompt_set, token_lists, lengths, config, seed, world.size)
                held.callback(wait_for_files, manifest)  # a file still being written is finished before the lock goes
            return manifest

        manifest = distributed.on_main(world, prepare)
        if manifest["status"] != "complete":
            _cache_shards(
                out,
                model,
                manifest,
                prompt_set,
                token_lists,
                hook_names,
                position_spec,
                max_length,
                storage_dtype,
                batch_size,
                progress,
                world,
                fast,
            )
    return ActivationStore.open(out)


def _cache_shards(
    out: Path,
    model,
    manifest,
    prompt_set,
    token_lists,
    hook_names,
    position_spec,
    max_length,
    storage_dtype,
    batch_size,
    progress,
    world,
    fast: bool = True,
) -> None:
    """Write this rank's missing shards (all of them in a world of one), then mark the store complete."""
    shard_size = manifest["shard_size"]

    pad_id = pad_token_id(model)
    n_shards = math.ceil(len(prompt_set) / shard_size)
    done = {shard["index"] for shard in manifest["shards"]}
    mine = world.take(range(n_shards))
    todo = [index for index in mine if index not in done]
    rows = {index: _shard_rows(index, shard_size, len(prompt_set)) for index in mine}
    finished: list[dict[str, Any]] = []  # under torchrun: this rank's new shard entries, in its progress file
    desc = f"caching {len(hook_names)} sites" + (f" (rank 0 of {world.size})" if world.is_distributed else "")
    bar = tqdm(
        total=sum(rows.values()),
        initial=sum(rows.values()) - sum(rows[i] for i in todo),
        desc=desc,
        unit="prompt",
        disable=not progress or not world.is_main,
    )
    # the path is chosen on the whole store's batches, not this run's: a resumed run computes what the first one did
    capture = Capturer(
        model,
        hook_names,
        position_spec,
        max_length,
        storage_dtype,
        n_batches=-(-len(prompt_set) // batch_size),
        fast=fast,
    )
    with torch.inference_mode():
        for index in todo:
            start, stop = index * shard_size, min((index + 1) * shard_size, len(prompt_set))
            pieces: dict[str, list[Tensor]] = {name: [] for name in hook_names}
            for batch in iter_batches(token_lists, batch_size, pad_id, start, stop):
                captured = capture(batch)
                for name in hook_names:
                    pieces[name].append(captured[name])
                bar.update(len(batch.indices))
            tensors = {name: torch.cat(parts) for name, parts in pieces.items()}
            if not manifest.get("shapes"):
                manifest["shapes"] = {name: list(t.shape[1:]) for name, t in tensors.items()}
            file = f"shards/shard_{index:05d}.safetensors"
            identity = {"store": manifest["store_id"], "index": str(index)}  # checked on every open
            shard, tensor_hashes = shard_bytes(
                tensors, {"format": FORMAT, **identity, "start": str(start), "stop": str(stop)}
            )
            atomic_write_bytes(out / file, shard)
            entry = {
                "index": index,
                "file": file,
                "start": start,
                "stop": stop,
                **file_record(out / file),
                "tensor_hashes": tensor_hashes,  # each checked the first time a process reads it
            }
            ran = {"path": capture.path, "reason": capture.reason}
            if world.is_distributed:
                finished.append(entry)
                progress_file = {
                    "world_size": world.size,
                    "rank": world.rank,
                    "shapes": manifest["shapes"],
                    "shards": finished,
                    "capture": ran,
                }
                atomic_write_json(out / RANK_PROGRESS.format(rank=world.rank), progress_file)
            else:
                manifest["capture"] = ran  # how the values were computed: the plain view or the bridge, and why
                manifest["shards"].append(entry)
                manifest["shards"].sort(key=lambda shard: shard["index"])
                _write_manifest(out, manifest)
    bar.close()
    if world.is_distributed:
        distributed.barrier(world)
        distributed.on_main(world, lambda: _finish_ranks(out, world.size))
    else:
        _finish(out, manifest)


def _finish(out: Path, manifest: dict[str, Any]) -> None:
    manifest.pop("world_size", None)  # partial state only: a complete store is the same however many ranks wrote it
    manifest["status"] = "complete"
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write_manifest(out, manifest)


def _finish_ranks(out: Path, world_size: int) -> None:
    """On rank 0, after every rank finished: merge their progress files and mark the store complete."""
    manifest = _merge_rank_progress(out, read_manifest(out), world_size)
    n_shards = math.ceil(manifest["n_prompts"] / manifest["shard_size"])
    missing = sorted(set(range(n_shards)) - {shard["index"] for shard in manifest["shards"]})
    if missing:
        raise InterpError(
            f"the ranks finished but {len(missing)} shards of {out} are not recorded (first: {missing[0]}); rerun the "
            "same command with --resume."
        )
    _finish(out, manifest)


def _merge_rank_progress(out: Path, manifest: dict[str, Any], world_size: int) -> dict[str, Any]:
    """The manifest with the shards listed in the ranks' progress files added (written, then those files removed)."""
    paths = [path for path in (out / RANK_PROGRESS.format(rank=rank) for rank in range(world_size)) if path.exists()]
    if not paths:
        return manifest
    known = {shard["index"] for shard in manifest["shards"]}
    for path in paths:
        try:
            progress = json.loads(path.read_text(encoding="utf-8"))
            entries = [
                entry for entry in progress["shards"] if isinstance(entry, dict) and isinstance(entry.get("index"), int)
            ]
        except (OSError, ValueError, TypeError, KeyError) as error:
            logger.warning("interp: cannot read the progress file %s (%s); its shards are computed again.", path, error)
            continue
        if not manifest.get("shapes") and isinstance(progress.get("shapes"), dict):
            manifest["shapes"] = progress["shapes"]
        if isinstance(progress.get("capture"), dict):  # the ranks capture alike: any rank's record stands for all
            manifest["capture"] = progress["capture"]
        manifest["shards"].extend(entry for entry in entries if entry["index"] not in known)
        known |= {entry["index"] for entry in entries}
    manifest["shards"].sort(key=lambda shard: shard["index"])
    atomic_write_json(out / MANIFEST, manifest)
    for path in paths:
        path.unlink(missing_ok=True)
    return manifest


def _prepare_directory(out: Path, config: dict[str, Any], resume: bool, world_size: int = 1) -> dict[str, Any] | None:
    """The manifest to continue from, or None for a fresh store. Refuses to clobber anything.

    An unfinished store resumes only with the number of ranks (``world_size``) that started it.
    """
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        found = {path.name for path in out.iterdir()} - {LOCK} if out.exists() else set()
        if found and found <= _START_FILES and (not (out / "shards").exists() or (out / "shards").is_dir()):
            if not resume:
                raise InterpError(
                    f"{out} holds the start of a store that stopped before its manifest was written; pass --resume "
                    "(resume=True) to start it afresh, or choose a new --out."
                )
            logger.warning(
                "interp: %s holds an interrupted start of a store (no %s yet); starting it afresh.", out, MANIFEST
            )
            return None
        if found:
            raise InterpError(f"{out} is not empty and holds no activation store; choose a new --out directory.")
        return None
    manifest = read_manifest(out)
    differences = [key for key in config if manifest.get(key) != config[key]]
    if not resume:
        state = (
            "a complete store"
            if manifest["status"] == "complete"
            else f"an unfinished store ({len(manifest['shards'])} shards done)"
        )
        raise InterpError(
            f"{out} already holds {state}; pass --resume (resume=True) to continue or reuse it, or choose a new --out."
        )
    if manifest["status"] != "complete" and manifest.get("format_version", 0) != FORMAT_VERSION:
        raise InterpError(
            f"cannot resume {out}: it was started by an older interp (store format "
            f"{manifest.get('format_version', 0)}, "
            f"this interp writes {FORMAT_VERSION}); use a new --out."
        )
    if differences:
        details = "; ".join(f"{key}: store has {manifest.get(key)!r}, this run {config[key]!r}" for key in differences)
        raise InterpError(f"cannot resume {out}: it was made with different settings ({details}). Use a new --out.")
    started_by = manifest.get("world_size", 1)
    if manifest["status"] != "complete" and started_by != world_size:
        how = (
            f"{started_by} ranks (torchrun: nnodes x nproc-per-node = {started_by})"
            if started_by > 1
            else "one process, without torchrun"
        )
        raise InterpError(
            f"cannot resume {out}: it was started by {started_by} ranks and this run has {world_size}; resume it with "
            f"{how}, or choose a new --out."
        )
    for leftover in [
        *out.glob(".*.tmp"),
        *(out / "shards").glob(".*.tmp"),
    ]:  # a killed writer's half-written files (we hold the lock)
        if leftover.is_file():
            leftover.unlink()
    manifest = _merge_rank_progress(out, manifest, started_by)  # shards the ranks of the stopped run finished
    check_files(out, manifest, full=True)  # the full check: what is damaged is refused, or (a shard) computed again
    check_prompts(out, manifest)
    check_tokens(out, manifest)
    kept = []
    for shard in manifest["shards"]:
        try:
            verify_shard(out, manifest, shard)
            kept.append(shard)
        except InterpError as error:
            logger.warning("interp: %s It is computed again now.", error)
    if len(kept) != len(manifest["shards"]):
        manifest = {**manifest, "status": "in_progress", "shards": kept}
        atomic_write_json(out / MANIFEST, manifest)
    return manifest


def _start_store(
    out: Path,
    model,
    prompts: PromptSet,
    token_lists,
    lengths: Tensor,
    config: dict[str, Any],
    seed: int,
    world_size: int = 1,
) -> dict[str, Any]:
    (out / "shards").mkdir(parents=True, exist_ok=True)
    prompts.to_jsonl(out / "prompts.jsonl")
    padded = torch.zeros((len(token_lists), int(lengths.max())), dtype=torch.long)
    for row, ids in enumerate(token_lists):
        padded[row, : len(ids)] = ids
    atomic_write_safetensors(out / "tokens.safetensors", {"input_ids": padded, "lengths": lengths.long()})
    readout = Readout.from_model(model)
    files: dict[str, Any] = {name: file_record(out / name) for name in (PROMPTS, TOKENS)}
    tokenizer_dir = out / "tokenizer"
    if model.tokenizer is not None:
        tmp = out / ".tokenizer.tmp"
        model.tokenizer.save_pretrained(str(tmp))
        if tokenizer_dir.exists():
            import shutil

            shutil.rmtree(tokenizer_dir)
        os.replace(tmp, tokenizer_dir)
    cfg = model.cfg
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "status": "in_progress",
        **config,
        "store_id": store_id(config),
        "architecture": str(getattr(cfg, "architecture", "")),
        "n_layers": int(cfg.n_layers),
        "d_model": int(cfg.d_model),
        "n_heads": int(cfg.n_heads),
        "d_vocab": int(cfg.d_vocab),
        "n_ctx": int(cfg.n_ctx),
        "tokenizer": {
            "name_or_path": str(getattr(model.tokenizer, "name_or_path", "")),
            "vocab_size": len(model.tokenizer) if model.tokenizer is not None else None,
            "class": type(model.tokenizer).__name__,
        },
        "max_length": int(lengths.max()),
        "readout": {
            "file": "readout.safetensors",
            "norm": readout.norm,
            "verified_max_abs_diff": readout.verified_max_abs_diff,
        },
        "seed": seed,
        "interp_version": interp.__version__,
        "torch_version": torch.__version__,
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "shapes": {},
        "files": files,
        "shards": [],
        **({"world_size": world_size} if world_size > 1 else {}),  # until complete: who may resume it
    }
    if world_size > 1:  # the manifest travels to the other ranks now, as JSON
        readout.save(out / "readout.safetensors")
        files["readout.safetensors"] = file_record(out / "readout.safetensors")
        atomic_write_json(out / MANIFEST, manifest)
    else:  # written while the first batches run; the manifest is first written once it is on disk (_write_manifest)
        files["readout.safetensors"] = PendingFile(out / "readout.safetensors", readout.save)
    return manifest


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest, once the files it records are (the readout may still be being written)."""
    atomic_write_json(out / MANIFEST, settle_files(manifest))


def shard_bytes(tensors: dict[str, Tensor], metadata: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A safetensors file whose bytes depend only on ``tensors`` and ``metadata``: keys sorted, data in name order.

    ``safetensors.torch.save`` orders the metadata as a Rust HashMap does, which differs from one
    process to the next; a shard's hash (in the manifest) must not, so that the ranks of a torchrun
    run write the files one process writes. Also returns the hash of each tensor's bytes.
    """
    codes = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset, hashes = [], 0, {}
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        blob = tensor_bytes(tensor)
        header[name] = {
            "dtype": codes[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        hashes[name] = tensor_hash(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(text)) + text + b"".join(blobs), hashes


def _shard_rows(index: int, shard_size: int, n_prompts: int) -> int:
    return max(0, min((index + 1) * shard_size, n_prompts) - index * shard_size)
