"""Hand-damaged activation stores: each is refused with one InterpError naming what is wrong, never used silently.

One small store is cached once; every test damages its own copy.
"""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from interp.cli import main
from interp.errors import InterpError
from interp.store import ActivationStore, cache_activations

from conftest import PROMPTS

LABELS = ["benign", "harmful"] * 4


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, load_tiny) -> Path:
    from interp.data import PromptSet

    out = tmp_path_factory.mktemp("stores") / "pristine"
    prompts = PromptSet.from_texts(PROMPTS[:6] + PROMPTS[:2], labels=LABELS)
    cache_activations(load_tiny("gpt2"), prompts, hooks=["resid_post"], out=out, batch_size=2, shard_size=2, progress=False)
    return out


@pytest.fixture
def store_dir(pristine, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(pristine, copy)
    return copy


def _manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


def _write_manifest(store: Path, manifest) -> None:
    (store / "manifest.json").write_text(json.dumps(manifest))


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_pristine_store_opens_and_verifies(store_dir, capsys):
    store = ActivationStore.open(store_dir, verify=True)
    assert store.n_prompts == 8 and store.prompts.labels == LABELS
    assert main(["store", "verify", str(store_dir)]) == 0
    assert "intact" in capsys.readouterr().out


def test_a_flipped_data_byte_fails_verification_and_is_recomputed_on_resume(store_dir, pristine, load_tiny, capsys, caplog):
    shard = store_dir / "shards" / "shard_00001.safetensors"
    _flip_last_byte(shard)
    with pytest.raises(InterpError, match="shard_00001.safetensors does not match its recorded hash"):
        ActivationStore.open(store_dir, verify=True)
    assert main(["store", "verify", str(store_dir)]) == 2
    assert "shard_00001.safetensors does not match its recorded hash" in capsys.readouterr().err
    from interp.data import PromptSet

    prompts = PromptSet.from_texts(PROMPTS[:6] + PROMPTS[:2], labels=LABELS)
    resumed = cache_activations(load_tiny("gpt2"), prompts, hooks=["resid_post"], out=store_dir, batch_size=2, shard_size=2, resume=True, progress=False)
    assert "computed again" in caplog.text  # a warning of the logger interp.store.cache
    reference = ActivationStore.open(pristine)
    for hook in reference.hooks:
        assert torch.equal(resumed[hook], reference[hook]), hook
    resumed.verify()


def test_two_swapped_shards_are_refused_on_open(store_dir):
    first, second = store_dir / "shards" / "shard_00000.safetensors", store_dir / "shards" / "shard_00001.safetensors"
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    with pytest.raises(InterpError, match=r"shard_00000.safetensors is corrupted: it holds prompts 2..4, the manifest says 0..2 \(files swapped\?\)"):
        ActivationStore.open(store_dir)


def test_swapped_labels_in_the_prompts_are_refused_on_open(store_dir):
    path = store_dir / "prompts.jsonl"
    rows = [json.loads(line) for line in path.read_text().split("\n") if line]
    rows[0]["label"], rows[1]["label"] = rows[1]["label"], rows[0]["label"]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(InterpError, match="prompts.jsonl does not match the prompts hash"):
        ActivationStore.open(store_dir)


@pytest.mark.parametrize("file", ["/etc/hostname", "../x", "shards/../../x", "", 7])
def test_a_manifest_entry_outside_the_store_is_refused(store_dir, file):
    manifest = _manifest(store_dir)
    manifest["shards"][0]["file"] = file
    _write_manifest(store_dir, manifest)
    with pytest.raises(InterpError, match="not a path inside|lacks one of"):
        ActivationStore.open(store_dir)


def test_a_readout_outside_the_store_is_refused(store_dir):
    manifest = _manifest(store_dir)
    manifest["readout"]["file"] = "/etc/hostname"
    _write_manifest(store_dir, manifest)
    with pytest.raises(InterpError, match="the readout file '/etc/hostname' is not a path inside"):
        ActivationStore.open(store_dir)


def test_a_link_out_of_the_store_is_refused(store_dir, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(store_dir / "shards" / "shard_00000.safetensors", outside)
    (store_dir / "shards" / "shard_00000.safetensors").unlink()
    (store_dir / "shards" / "shard_00000.safetensors").symlink_to(outside)
    with pytest.raises(InterpError, match="leads outside"):
        ActivationStore.open(store_dir)


def _set(key, value):
    def change(manifest):
        manifest[key] = value
        return manifest

    return change


def _drop(key):
    def change(manifest):
        del manifest[key]
        return manifest

    return change


def _shape(manifest):
    manifest["shapes"] = {hook: [shape[0] + 1] for hook, shape in manifest["shapes"].items()}
    return manifest


MANIFEST_DAMAGE = {
    "a list": (lambda manifest: [manifest], "not an interp activation-store manifest"),
    "no status": (_drop("status"), "has no 'status'"),
    "no shards": (_drop("shards"), "has no 'shards'"),
    "shards a dict": (_set("shards", {}), "'shards' is dict"),
    "unknown status": (_set("status", "done"), "unknown status 'done'"),
    "unknown dtype": (_set("dtype", "float8"), "unknown dtype 'float8'"),
    "wrong shape": (_shape, r"is \('F32', \[2, 32\]\), the manifest says \('F32', \[2, 33\]\)"),
    "no hooks": (_set("hooks", []), "'hooks' must be distinct"),
    "n_prompts a string": (_set("n_prompts", "8"), "'n_prompts' is str"),
    "n_prompts too large": (_set("n_prompts", 9), "says complete but lists 4 shards for 9 prompts"),
    "format_version text": (_set("format_version", "one"), "format_version 'one'"),
    "shard entry a string": (lambda m: {**m, "shards": ["x"]}, "lacks one of"),
    "shard index moved": (lambda m: {**m, "shards": [{**m["shards"][0], "index": 2}, *m["shards"][1:]]}, "shard 2 covers prompts 0..2"),
    "complete with a shard missing": (lambda m: {**m, "shards": m["shards"][1:]}, "missing prompts 0..2|says complete"),
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_a_hand_edited_manifest_is_a_clear_error(store_dir, damage):
    change, message = MANIFEST_DAMAGE[damage]
    _write_manifest(store_dir, change(_manifest(store_dir)))
    with pytest.raises(InterpError, match=message):
        ActivationStore.open(store_dir)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


FILE_DAMAGE = {
    "tokens missing": ("tokens.safetensors", Path.unlink, "tokens.safetensors is missing"),
    "tokens truncated": ("tokens.safetensors", _truncate, "tokens.safetensors is corrupted"),
    "prompts missing": ("prompts.jsonl", Path.unlink, "prompts.jsonl is missing"),
    "prompts truncated": ("prompts.jsonl", _truncate, "prompts.jsonl is corrupted"),
    "readout missing": ("readout.safetensors", Path.unlink, "readout.safetensors is missing"),
    "shard missing": ("shards/shard_00002.safetensors", Path.unlink, "shard_00002.safetensors is missing"),
    "shard with extra bytes": ("shards/shard_00002.safetensors", lambda p: p.write_bytes(p.read_bytes() + b"\0"), "shard_00002.safetensors is corrupted"),
    "shard header garbage": ("shards/shard_00002.safetensors", lambda p: p.write_bytes(b"\x10" + b"\0" * 7 + b"[1, 2, 3, 4, 5, 6]" + p.read_bytes()[24:]), "is corrupted"),
}


@pytest.mark.parametrize("damage", list(FILE_DAMAGE))
def test_a_damaged_store_file_is_a_clear_error(store_dir, damage):
    name, change, message = FILE_DAMAGE[damage]
    change(store_dir / name)
    with pytest.raises(InterpError, match=message):
        ActivationStore.open(store_dir)


def test_the_tokens_with_the_wrong_shape_are_refused(store_dir):
    from safetensors.torch import save_file

    save_file({"input_ids": torch.zeros((3, 2), dtype=torch.long), "lengths": torch.ones(3, dtype=torch.long)}, str(store_dir / "tokens.safetensors"))
    manifest = _manifest(store_dir)
    del manifest["files"]  # an older store records no sizes: the header check still refuses it
    _write_manifest(store_dir, manifest)
    with pytest.raises(InterpError, match=r"tokens.safetensors is corrupted: input_ids is \('I64', \[3, 2\]\), expected int64 \[8, "):
        ActivationStore.open(store_dir)


def _mutate(value, rng: random.Random):
    """A random hand edit of a JSON value: a type swap, a deletion, a nonsense number, a path."""
    choices = [None, -1, 0, 2**70, 1.5, float("nan"), "", "../../etc/hostname", [], {}, [1, "x"], True]
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(sorted(value))
        if rng.random() < 0.2:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: _mutate(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.7:
        index = rng.randrange(len(value))
        return [*value[:index], _mutate(value[index], rng), *value[index + 1 :]]
    return rng.choice(choices)


def test_randomly_edited_manifests_give_only_interp_errors(store_dir):
    """A bounded seeded fuzz of the manifest loader (hypothesis is not a dependency): nothing but InterpError escapes."""
    original = _manifest(store_dir)
    rng = random.Random(0)
    outcomes = {"opened": 0, "refused": 0}
    for _ in range(60):
        _write_manifest(store_dir, _mutate(original, rng))
        try:
            ActivationStore.open(store_dir, allow_partial=rng.random() < 0.5)
            outcomes["opened"] += 1
        except InterpError:
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 30, outcomes
