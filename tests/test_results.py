"""The result contract (``interp.results.Result``): save / load derived from the fields, every field checked on load,
and a damaged or hand-edited file is one line naming the file and the field."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

import pytest
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InterpError
from interp.io import RESULT_FORMATS, ResultFormat
from interp.provenance import Provenance
from interp.results import Result

TOY_FORMAT = ResultFormat(kind="toy_result", version=1, name="toy result", meta_file="toy.json", tensors_file="toy.safetensors",
                          create="make_toy().save(DIR)", load="Toy.load(DIR)")  # fmt: skip
RESULT_FORMATS.pop(TOY_FORMAT.kind)  # a format of this test only: out of the registry of the package's kinds, which other tests go through


@dataclass(frozen=True)
class Part:
    layer: int
    label: str = ""


@dataclass(frozen=True, eq=False)
class Toy(Result):
    FORMAT = TOY_FORMAT
    FIGURE_FILE = None

    scores: Float[Tensor, "site prompt"]
    valid: Bool[Tensor, " prompt"]
    sites: tuple[str, ...]
    kind: Literal["lens", "probe"]
    weights: Mapping[str, float]
    parts: tuple[Part, ...]
    provenance: Provenance
    note: str | None = None
    added_later: int = 7  # a field a later version added: absent from older files

    def __post_init__(self) -> None:
        if self.scores.shape[0] != len(self.sites):
            raise InterpError(f"scores have {self.scores.shape[0]} rows but there are {len(self.sites)} sites.")

    def files(self) -> dict[str, str]:
        return {"toy.csv": "site\n" + "\n".join(self.sites) + "\n"}


def make_toy() -> Toy:
    return Toy(scores=torch.arange(6.0).reshape(2, 3), valid=torch.tensor([True, False, True]), sites=("a", "b"), kind="lens",
               weights={"x": 0.5}, parts=(Part(1, "one"), Part(2)), provenance=Provenance(model_id="toy", weights_hash="abc"))  # fmt: skip


def test_save_and_load_round_trip_every_kind_of_field(tmp_path):
    toy = make_toy()
    toy.save(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["toy.csv", "toy.json", "toy.safetensors"]
    loaded = Toy.load(tmp_path)
    assert torch.equal(loaded.scores, toy.scores) and loaded.valid.dtype == torch.bool and torch.equal(loaded.valid, toy.valid)
    assert (loaded.sites, loaded.kind, loaded.weights, loaded.parts, loaded.note) == (toy.sites, toy.kind, toy.weights, toy.parts, None)
    assert loaded.provenance.model_id == "toy" and loaded.provenance.weights_hash == "abc"


def _edited(tmp_path: Path, edit) -> Path:
    make_toy().save(tmp_path)
    meta = json.loads((tmp_path / "toy.json").read_text())
    edit(meta)
    (tmp_path / "toy.json").write_text(json.dumps(meta))
    return tmp_path


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda meta: meta.pop("sites"), "lacks the field 'sites'"),
        (lambda meta: meta.update(sites=None), "field 'sites' should be a list of a string, got null"),
        (lambda meta: meta.update(sites=["a", 3]), "field 'sites[1]' should be a string, got the number 3"),
        (lambda meta: meta.update(kind="tree"), "field 'kind' should be one of 'lens', 'probe', got 'tree'"),
        (lambda meta: meta.update(weights={"x": "heavy"}), "field 'weights['x']' should be a number"),
        (lambda meta: meta.update(parts=[{"layer": "one"}]), "field 'parts[0].layer' should be an integer"),
        (lambda meta: meta.update(parts=[{"layer": 1, "depth": 2}]), "field 'parts[0]' has keys ['depth']"),
        (lambda meta: meta.update(sites=["a"]), "does not hold together: scores have 2 rows but there are 1 sites"),
        (lambda meta: meta.update(note=[]), "field 'note' should be a string or null, got a list of 0"),
        (lambda meta: meta.update(provenance={"model_id": 5, "weights_hash": "abc"}), "field 'provenance.model_id' should be a string"),
        (lambda meta: meta.update(provenance=[1]), "holds a provenance that is not an object"),
    ],
    ids=["missing", "null", "item-type", "literal", "mapping-value", "nested-type", "nested-unknown-key", "inconsistent", "union",
         "provenance-field", "provenance-type"],
)
def test_an_edited_field_is_one_line_naming_the_file_and_the_field(tmp_path, edit, names):
    directory = _edited(tmp_path, edit)
    with pytest.raises(InterpError) as error:
        Toy.load(directory)
    message = str(error.value)
    assert "\n" not in message and str(directory / "toy.json") in message and names in message, message
    assert "Create it again with make_toy().save(DIR)" in message


def test_json_nested_too_deeply_to_parse_is_one_line(tmp_path):
    make_toy().save(tmp_path)
    (tmp_path / "toy.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(InterpError, match=r"toy.json is not valid JSON \(nested too deeply to read\); the saved toy result is damaged"):
        Toy.load(tmp_path)


def test_a_field_added_later_takes_its_default_and_a_missing_tensor_is_named(tmp_path):
    loaded = Toy.load(_edited(tmp_path, lambda meta: meta.pop("added_later")))
    assert loaded.added_later == 7
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "toy.safetensors")
    del tensors["valid"]
    save_file(tensors, tmp_path / "toy.safetensors", metadata={"format": "interp.toy_result", "format_version": "1"})
    with pytest.raises(InterpError, match=r"toy.safetensors lacks the tensor 'valid'; the saved toy result is damaged"):
        Toy.load(tmp_path)


def test_a_patching_result_edited_by_hand_is_one_line(tmp_path):
    """The defect of the hardening issue on a real result class: `labels: null`, a deleted key, a retyped one."""
    from interp.patching import PatchingResult
    from interp.provenance import Provenance

    result = PatchingResult(values=torch.zeros(2, 3), axes=("layer", "pos"), labels={"layer": ("0", "1"), "pos": ("0:a", "1:b", "2:c")},
                            site="resid_pre", hook_names=("blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"), method="activation",
                            direction="denoising", metric_name="m", clean_metric=1.0, corrupt_metric=0.0, clean_tokens=("a", "b", "c"),
                            corrupt_tokens=("a", "b", "d"), n_prompts=1, provenance=Provenance(model_id="toy", weights_hash="abc"))  # fmt: skip
    result.save(tmp_path)
    assert PatchingResult.load(tmp_path).labels == result.labels
    for key, value, expected in (("labels", None, "field 'labels' should be an object, got null"),
                                 ("hook_names", "__delete__", "lacks the field 'hook_names'"),
                                 ("clean_metric", "high", "field 'clean_metric' should be a number"),
                                 ("axes", ["layer"], "does not hold together")):  # fmt: skip
        meta = json.loads((tmp_path / "result.json").read_text())
        saved = dict(meta)
        meta.pop(key) if value == "__delete__" else meta.update({key: value})
        (tmp_path / "result.json").write_text(json.dumps(meta))
        with pytest.raises(InterpError) as error:
            PatchingResult.load(tmp_path)
        assert "\n" not in str(error.value) and "result.json" in str(error.value) and expected in str(error.value), str(error.value)
        (tmp_path / "result.json").write_text(json.dumps(saved))


def test_fields_that_are_one_tensor_are_written_apart(tmp_path):
    from safetensors.torch import load_file

    from interp.io import atomic_write_safetensors

    shared = torch.arange(6.0)
    atomic_write_safetensors(tmp_path / "t.safetensors", {"a": shared, "b": shared, "c": shared[:2], "d": torch.zeros(0)})
    loaded = load_file(str(tmp_path / "t.safetensors"))
    assert torch.equal(loaded["a"], shared) and torch.equal(loaded["b"], shared) and torch.equal(loaded["c"], shared[:2])
