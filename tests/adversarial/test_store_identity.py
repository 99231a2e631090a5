"""A store reads only its own, intact bytes: a shard of another store is refused on open, damaged bytes on first read.

The scenario these guard against: cache the same prompts in another order, copy that store's shard
over this one's (same shapes, same sizes), and train a probe. Before shards carried their store's id
and a hash per tensor, the probe trained on the foreign rows (CV AUROC 1.000) and scored 0.000 on
the real store; a flipped byte was read as data unless `interp store verify` ran first.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from interp.cli import main
from interp.errors import InterpError
from interp.store import ActivationStore, cache_activations
from interp.store.manifest import FORMAT_VERSION

from conftest import PROMPTS

TEXTS = PROMPTS[:6] + PROMPTS[:2]
LABELS = ["benign", "harmful"] * 4
HOOK = "blocks.1.hook_resid_post"


def _cache(model, texts, labels, out: Path) -> Path:
    from interp.data import PromptSet

    prompts = PromptSet.from_texts(texts, labels=labels)
    cache_activations(model, prompts, hooks=["resid_post"], out=out, batch_size=2, shard_size=4, progress=False)
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory, load_tiny) -> tuple[Path, Path]:
    """The same prompts cached twice, the second time in reverse order: shards of equal shape and size."""
    model = load_tiny("gpt2")
    root = tmp_path_factory.mktemp("identity")
    forward = _cache(model, TEXTS, LABELS, root / "forward")
    backward = _cache(model, TEXTS[::-1], LABELS[::-1], root / "backward")
    return forward, backward


@pytest.fixture
def store_dir(stores, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(stores[0], copy)
    return copy


def _flip_data_byte(path: Path, hook: str) -> None:
    """Flip one byte inside ``hook``'s data (not the header, not the padding): what a disk or a hand edit can do."""
    data = bytearray(path.read_bytes())
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    begin, end = header[hook]["data_offsets"]
    data[8 + header_length + (begin + end) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_every_shard_names_its_store_and_index(stores):
    forward, backward = (ActivationStore.open(path) for path in stores)
    assert forward.manifest["format_version"] == FORMAT_VERSION == 2
    assert forward.manifest["store_id"] != backward.manifest["store_id"]  # other prompt order, other store
    for entry in forward.manifest["shards"]:
        assert set(entry["tensor_hashes"]) == set(forward.hooks)


def test_a_shard_copied_from_another_store_of_the_same_shape_is_refused_on_open(stores, store_dir):
    foreign = stores[1] / "shards" / "shard_00000.safetensors"
    mine = store_dir / "shards" / "shard_00000.safetensors"
    assert foreign.stat().st_size == mine.stat().st_size and foreign.read_bytes() != mine.read_bytes()
    shutil.copyfile(foreign, mine)
    with pytest.raises(InterpError, match=r"shard_00000.safetensors is corrupted: it belongs to the store \w+, not to this one"):
        ActivationStore.open(store_dir)


def test_probe_train_on_a_store_with_a_foreign_shard_is_one_line_error(stores, store_dir, tmp_path, capsys):
    shutil.copyfile(stores[1] / "shards" / "shard_00001.safetensors", store_dir / "shards" / "shard_00001.safetensors")
    code = main(["probe", "train", "--store", str(store_dir), "--out", str(tmp_path / "probe")])
    err = capsys.readouterr().err
    assert code == 2 and "copied from another store" in err and "Traceback" not in err
    assert not (tmp_path / "probe").exists() or not any((tmp_path / "probe").iterdir())


def test_a_flipped_byte_opens_but_its_first_read_is_refused(store_dir):
    _flip_data_byte(store_dir / "shards" / "shard_00001.safetensors", HOOK)
    store = ActivationStore.open(store_dir)  # the cheap checks on open see a well-formed shard
    with pytest.raises(InterpError, match=rf"shard_00001.safetensors is corrupted: the bytes of {HOOK} differ from the hash"):
        store[HOOK]
    store["blocks.0.hook_resid_post"]  # the other hook of that shard is intact and reads


def test_checking_reads_can_be_turned_off_and_the_damage_is_then_read(store_dir, stores):
    _flip_data_byte(store_dir / "shards" / "shard_00000.safetensors", HOOK)
    unchecked = ActivationStore.open(store_dir, check_reads=False)
    assert not unchecked.check_reads
    assert not torch.equal(unchecked[HOOK], ActivationStore.open(stores[0])[HOOK])  # the damage, read as data


def test_a_damaged_tokens_file_is_refused_on_first_read(store_dir):
    path = store_dir / "tokens.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last length
    path.write_bytes(bytes(data))
    store = ActivationStore.open(store_dir)
    with pytest.raises(InterpError, match="tokens.safetensors is corrupted: its content differs from the hash"):
        store.lengths


def test_an_intact_store_reads_the_same_with_and_without_the_check(stores):
    checked, unchecked = ActivationStore.open(stores[0]), ActivationStore.open(stores[0], check_reads=False)
    for hook in checked.hooks:
        assert torch.equal(checked[hook], unchecked[hook])
    assert torch.equal(checked.lengths, unchecked.lengths)


def _as_format_1(store: Path) -> None:
    """Rewrite a store's manifest as the first format wrote it: no store id, no hash per tensor."""
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest.pop("store_id")
    for entry in manifest["shards"]:
        entry.pop("tensor_hashes")
    (store / "manifest.json").write_text(json.dumps(manifest))


def test_a_store_of_the_first_format_still_reads_and_its_shards_are_hashed_whole(store_dir, stores):
    _as_format_1(store_dir)
    assert torch.equal(ActivationStore.open(store_dir)[HOOK], ActivationStore.open(stores[0])[HOOK])
    _flip_data_byte(store_dir / "shards" / "shard_00000.safetensors", HOOK)
    with pytest.raises(InterpError, match="shard_00000.safetensors is corrupted: its content differs from the hash"):
        ActivationStore.open(store_dir)[HOOK]


def test_an_unfinished_store_of_the_first_format_is_not_resumed(store_dir, load_tiny):
    from interp.data import PromptSet

    _as_format_1(store_dir)
    manifest = json.loads((store_dir / "manifest.json").read_text())
    manifest["status"], manifest["shards"] = "in_progress", manifest["shards"][:1]
    (store_dir / "manifest.json").write_text(json.dumps(manifest))
    prompts = PromptSet.from_texts(TEXTS, labels=LABELS)
    with pytest.raises(InterpError, match="it was started by an older interp .store format 1"):
        cache_activations(load_tiny("gpt2"), prompts, hooks=["resid_post"], out=store_dir, batch_size=2, shard_size=4, resume=True, progress=False)


def test_the_readout_names_the_width_it_takes(stores):
    readout = ActivationStore.open(stores[0]).readout
    with pytest.raises(InterpError, match=rf"width {readout.d_model} \(d_model\) in the last dimension, got \(3, 999\)"):
        readout(torch.zeros(3, 999))
    with pytest.raises(InterpError, match="got \\(\\)"):
        readout.unembed(torch.tensor(1.0))
    assert readout(torch.zeros(3, readout.d_model)).shape == (3, readout.d_vocab)
