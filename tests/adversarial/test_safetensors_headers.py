"""safetensors headers that parse as JSON but that safetensors itself refuses (found by tests/fuzz): the
store's header check refuses them first, as one InterpError naming the file, before anything is read."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from interp.errors import InterpError
from interp.store.manifest import read_header


def _rewrite_header(path: Path, edit) -> None:
    """Write ``path``: two int64 tensors, with ``edit(header)`` applied and the header padded to its old length."""
    data = save({"input_ids": torch.arange(6).reshape(2, 3), "lengths": torch.tensor([3, 2])}, metadata={"format": "test"})
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= length
    path.write_bytes(length.to_bytes(8, "little") + text + b" " * (length - len(text)) + data[8 + length :])


def test_an_untouched_header_reads(tmp_path):
    path = tmp_path / "tokens.safetensors"
    _rewrite_header(path, lambda header: None)
    header, _ = read_header(path)
    assert header["lengths"]["shape"] == [2]


def test_overlapping_data_offsets_are_refused(tmp_path):
    path = tmp_path / "tokens.safetensors"

    def overlap(header):  # each tensor's span fits its shape and the file size adds up, but the spans overlap
        header["input_ids"]["data_offsets"] = [16, 64]
        header["lengths"]["data_offsets"] = [8, 24]

    _rewrite_header(path, overlap)
    with pytest.raises(InterpError, match=r"tokens.safetensors is corrupted \(tensor 'lengths' starts at data byte 8, not 0"):
        read_header(path)


def test_tensors_stored_in_another_order_read(tmp_path):
    path = tmp_path / "tokens.safetensors"

    def swap(header):
        header["input_ids"]["data_offsets"] = [16, 64]
        header["lengths"]["data_offsets"] = [0, 16]

    _rewrite_header(path, swap)
    assert read_header(path)[0]["input_ids"]["data_offsets"] == [16, 64]


def test_a_float_in_a_shape_is_refused(tmp_path):
    path = tmp_path / "tokens.safetensors"
    _rewrite_header(path, lambda header: (header.pop("__metadata__"), header["lengths"].update(shape=[2.0])))
    with pytest.raises(InterpError, match=r"tensor 'lengths' has shape \[2.0\], not a list of sizes"):
        read_header(path)


def test_metadata_that_is_not_a_table_of_strings_is_refused(tmp_path):
    path = tmp_path / "tokens.safetensors"
    _rewrite_header(path, lambda header: header.update(__metadata__=[1]))
    with pytest.raises(InterpError, match="its __metadata__ is not a table of strings"):
        read_header(path)
