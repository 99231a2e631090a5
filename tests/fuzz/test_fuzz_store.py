"""Fuzz the activation store's loader: a valid tiny store with its manifest, prompts, tokens or a shard
damaged must open and read, or be refused with InterpError; nothing else may escape."""

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from interp.data import PromptSet
from interp.store import ActivationStore, cache_activations
from interp.store.manifest import file_record

from conftest import PROMPTS
from fuzzing import FUZZ, any_text, damaged_bytes, damaged_json, json_values, only_interp_errors

SHARD = "shards/shard_00001.safetensors"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, load_tiny) -> Path:
    out = tmp_path_factory.mktemp("fuzz-store") / "pristine"
    prompts = PromptSet.from_texts(PROMPTS[:4], labels=["benign", "harmful"] * 2)
    cache_activations(load_tiny("gpt2"), prompts, hooks=["resid_post"], out=out, batch_size=2, shard_size=2, progress=False)
    return out


@pytest.fixture(scope="module")
def workspace(pristine, tmp_path_factory) -> Path:
    """One copy of the store that each example damages one file of, restored afterwards."""
    copy = tmp_path_factory.mktemp("fuzz-store-copy") / "store"
    shutil.copytree(pristine, copy)
    return copy


def open_and_read(root: Path) -> bool:
    """Everything a user does with a store: open it, read every tensor, prompt and token, re-hash it."""
    store = ActivationStore.open(root)
    for hook in store.hooks:
        assert store[hook].shape == store.shape(hook)
    assert len(store.prompts) == store.n_prompts
    assert store.input_ids.shape[0] == store.lengths.shape[0] == store.n_prompts
    store.readout
    store.verify()
    return True


def check_damaged(workspace: Path, pristine: Path, name: str, data: bytes, rerecord: bool = False) -> None:
    """Write ``data`` as the store's file ``name`` and read the store; with ``rerecord`` the manifest records the
    damaged file's size and hash (as if it had been written so), so that the damage gets past the cheap checks."""
    try:
        (workspace / name).write_bytes(data)
        if rerecord and name != "manifest.json":
            manifest = json.loads((pristine / "manifest.json").read_text())
            entries = [entry for entry in manifest["shards"] if entry["file"] == name] or [manifest["files"][name]]
            entries[0].update(file_record(workspace / name))
            (workspace / "manifest.json").write_text(json.dumps(manifest))
        event("read" if only_interp_errors(lambda: open_and_read(workspace)) else "refused")
    finally:
        for restored in {name, "manifest.json"}:
            shutil.copy2(pristine / restored, workspace / restored)


def test_the_pristine_store_reads(pristine):
    open_and_read(pristine)


@FUZZ
@given(data=st.data())
def test_a_damaged_manifest_structure_is_read_or_refused(pristine, workspace, data):
    manifest = json.loads((pristine / "manifest.json").read_text())
    damaged = data.draw(damaged_json(manifest))
    check_damaged(workspace, pristine, "manifest.json", json.dumps(damaged).encode())


@FUZZ
@given(data=st.data())
def test_damaged_manifest_bytes_are_read_or_refused(pristine, workspace, data):
    check_damaged(workspace, pristine, "manifest.json", data.draw(damaged_bytes((pristine / "manifest.json").read_bytes())))


@FUZZ
@given(value=json_values)
def test_a_manifest_of_random_json_is_refused(pristine, workspace, value):
    check_damaged(workspace, pristine, "manifest.json", json.dumps(value).encode())


@pytest.mark.parametrize("name", [SHARD, "tokens.safetensors", "prompts.jsonl", "readout.safetensors"])
@FUZZ
@given(data=st.data())
def test_a_damaged_store_file_is_read_or_refused(pristine, workspace, name, data):
    original = (pristine / name).read_bytes()
    header_end = 8 + int.from_bytes(original[:8], "little") if name.endswith(".safetensors") else len(original)
    # most damage goes to the safetensors header, where the loader has to parse
    region = data.draw(st.sampled_from(["header", "anywhere"]))
    if region == "header":
        damaged = data.draw(damaged_bytes(original[:header_end])) + original[header_end:]
    else:
        damaged = data.draw(damaged_bytes(original))
    check_damaged(workspace, pristine, name, damaged, rerecord=data.draw(st.booleans()))


@pytest.mark.parametrize("name", [SHARD, "tokens.safetensors"])
@FUZZ
@given(data=st.data())
def test_a_safetensors_header_with_damaged_json_is_read_or_refused(pristine, workspace, name, data):
    original = (pristine / name).read_bytes()
    length = int.from_bytes(original[:8], "little")
    header = json.loads(original[8 : 8 + length])
    tensors = sorted(key for key in header if key != "__metadata__")
    if data.draw(st.booleans()):  # offsets that fit each shape but overlap or leave gaps (the size can still match)
        first, second = data.draw(st.sampled_from(tensors)), data.draw(st.sampled_from(tensors))
        begin, end = header[first]["data_offsets"]
        shift = data.draw(st.sampled_from([0, -8, 8, -header[second]["data_offsets"][0]]))
        header[second]["data_offsets"] = [max(begin + shift, 0), max(begin + shift, 0) + end - begin] if first != second else [begin + shift, end + shift]
    else:
        header = data.draw(damaged_json(header))
    text = json.dumps(header).encode()
    text += b" " * (max(length - len(text), 0) if data.draw(st.booleans()) else -len(text) % 8)  # often the original length
    damaged = len(text).to_bytes(8, "little") + text + original[8 + length :]
    check_damaged(workspace, pristine, name, damaged, rerecord=data.draw(st.booleans()))


@FUZZ
@given(data=st.data())
def test_damaged_prompt_records_are_read_or_refused(pristine, workspace, data):
    records = [json.loads(line) for line in (pristine / "prompts.jsonl").read_text().splitlines()]
    if data.draw(st.booleans()):  # a new text for one prompt (lone surrogates included)
        records[data.draw(st.integers(0, len(records) - 1))]["text"] = data.draw(any_text)
    damaged = data.draw(damaged_json(records))
    lines = damaged if isinstance(damaged, list) else [damaged]
    text = "".join(json.dumps(line) + "\n" for line in lines).encode()
    check_damaged(workspace, pristine, "prompts.jsonl", text, rerecord=data.draw(st.booleans()))
