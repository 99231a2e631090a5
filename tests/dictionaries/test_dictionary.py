"""SparseDictionary's formulas and its files: each format written by hand loads and encodes as its formula says;
interp's files load in sparsify itself; damaged or foreign files are one line."""

import json

import pytest
import torch
from safetensors.torch import save_file

from interp.dictionaries import SparseDictionary, load_dictionary, save_dictionary
from interp.errors import InterpError

D_IN, D_SAE = 12, 40


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=generator) / 3,
        "W_dec": torch.randn(D_SAE, D_IN, generator=generator) / 3,
        "b_enc": torch.randn(D_SAE, generator=generator) / 10,
        "b_dec": torch.randn(D_IN, generator=generator) / 10,
        "threshold": torch.rand(D_SAE, generator=generator) / 5,
    }


def _formula(weights, x, architecture: str, k: int | None = None, subtract_b_dec: bool = True):
    """The published formulas, written out independently of interp's code."""
    pre = (x - weights["b_dec"] if subtract_b_dec else x) @ weights["W_enc"] + weights["b_enc"]
    if architecture == "jumprelu":
        return torch.where(pre > weights["threshold"], pre, torch.zeros_like(pre))
    acts = torch.clamp(pre, min=0)
    if architecture == "topk":
        kth = acts.sort(-1, descending=True).values[..., k - 1 : k]
        acts = torch.where(acts >= kth, acts, torch.zeros_like(acts))
    return acts


def _saelens_dir(tmp_path, architecture: str, k: int | None = None, **config):
    weights = _weights()
    tensors = {name: weights[name] for name in ("W_enc", "W_dec", "b_enc", "b_dec")}
    if architecture == "jumprelu":
        tensors["threshold"] = weights["threshold"]
    directory = tmp_path / f"saelens_{architecture}"
    directory.mkdir()
    save_file(tensors, str(directory / "sae_weights.safetensors"))
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "apply_b_dec_to_input": True,
           "normalize_activations": "none", "metadata": {"model_name": "gemma-2-2b", "hook_name": "blocks.3.hook_resid_post"},
           **({"k": k} if k else {}), **config}  # fmt: skip
    (directory / "cfg.json").write_text(json.dumps(cfg))
    return directory, weights


@pytest.mark.parametrize(("architecture", "k"), [("standard", None), ("topk", 5), ("jumprelu", None)])
def test_a_saelens_directory_written_by_hand_encodes_as_its_formula(tmp_path, architecture, k):
    directory, weights = _saelens_dir(tmp_path, architecture, k)
    dictionary = load_dictionary(directory)
    x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(1))
    expected = _formula(weights, x, architecture, k)
    assert torch.allclose(dictionary.encode(x), expected, atol=1e-6, rtol=0)
    assert torch.allclose(dictionary(x), expected @ weights["W_dec"] + weights["b_dec"], atol=1e-6, rtol=0)
    assert dictionary.site == "blocks.3.hook_resid_post" and dictionary.model_id == "gemma-2-2b"
    if architecture == "topk":
        assert int((dictionary.encode(x) > 0).sum(-1).max()) <= k


def test_a_sparsify_directory_written_by_hand_encodes_as_its_formula(tmp_path):
    weights = _weights()
    directory = tmp_path / "layers.3"
    directory.mkdir()
    save_file({"encoder.weight": weights["W_enc"].T.contiguous(), "encoder.bias": weights["b_enc"],
               "W_dec": weights["W_dec"], "b_dec": weights["b_dec"]}, str(directory / "sae.safetensors"))  # fmt: skip
    (directory / "cfg.json").write_text(json.dumps({"activation": "topk", "expansion_factor": 3, "normalize_decoder": True,
                                                    "num_latents": D_SAE, "k": 6, "multi_topk": False,
                                                    "skip_connection": False, "transcode": False, "d_in": D_IN}))  # fmt: skip
    dictionary = load_dictionary(directory)
    x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(dictionary.encode(x), _formula(weights, x, "topk", 6), atol=1e-6, rtol=0)
    with pytest.raises(InterpError, match="several hook points .layers.3.: load one of them"):
        load_dictionary(tmp_path)


def test_interp_s_files_load_in_sparsify_itself_and_encode_alike(tmp_path):
    from sparsify import SparseCoder

    weights = _weights()
    dictionary = SparseDictionary(W_enc=weights["W_enc"], b_enc=weights["b_enc"], W_dec=weights["W_dec"],
                                  b_dec=weights["b_dec"], activation="topk", k=6, site="blocks.1.hook_resid_post")  # fmt: skip
    save_dictionary(dictionary, tmp_path / "sae")
    coder = SparseCoder.load_from_disk(tmp_path / "sae")
    x = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(3))
    top_acts, top_indices, _ = coder.encode(x)
    dense = torch.zeros(32, D_SAE).scatter_(1, top_indices, top_acts)
    assert torch.allclose(dense, dictionary.encode(x), atol=1e-6, rtol=0)
    assert torch.allclose(coder.decode(top_acts, top_indices), dictionary(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("architecture", "k"), [("relu", None), ("topk", 4), ("jumprelu", None)])
def test_every_dictionary_round_trips_through_its_files(tmp_path, architecture, k):
    weights = _weights()
    dictionary = SparseDictionary(W_enc=weights["W_enc"], b_enc=weights["b_enc"], W_dec=weights["W_dec"],
                                  b_dec=weights["b_dec"], activation=architecture, k=k,
                                  threshold=weights["threshold"] if architecture == "jumprelu" else None,
                                  site="blocks.2.hook_resid_post", model_id="m", weights_hash="abc")  # fmt: skip
    for format in (["sparsify", "saelens"] if architecture == "topk" else ["saelens"]):
        loaded = load_dictionary(save_dictionary(dictionary, tmp_path / format, format=format))
        x = torch.randn(16, D_IN)
        assert torch.equal(loaded.encode(x), dictionary.encode(x)), format
        assert (loaded.site, loaded.model_id, loaded.weights_hash) == ("blocks.2.hook_resid_post", "m", "abc")


def test_a_transcoder_with_a_skip_connection_round_trips_in_sparsify_format(tmp_path):
    weights = _weights()
    transcoder = SparseDictionary(W_enc=weights["W_enc"], b_enc=weights["b_enc"], W_dec=weights["W_dec"],
                                  b_dec=weights["b_dec"], activation="topk", k=5, W_skip=torch.randn(D_IN, D_IN) / 10,
                                  apply_b_dec_to_input=False, site="blocks.0.ln2.hook_normalized",
                                  output_site="blocks.0.hook_mlp_out")  # fmt: skip
    loaded = load_dictionary(save_dictionary(transcoder, tmp_path / "tc"))
    x = torch.randn(8, D_IN)
    assert loaded.is_transcoder and torch.allclose(loaded(x), transcoder(x), atol=1e-6)
    with pytest.raises(InterpError, match="transcoders in sparsify's format only"):
        save_dictionary(transcoder, tmp_path / "tc2", format="saelens")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w.update(b_enc=torch.zeros(D_SAE + 1)), r"b_enc has shape \(41,\), expected \(40,\)"),
        (lambda w: w.update(activation="gelu"), "unknown activation 'gelu'"),
        (lambda w: w.update(k=D_SAE + 1), "needs k in 1..40"),
        (lambda w: w.update(activation="jumprelu", k=None), "needs a threshold of shape"),
        (lambda w: w["W_dec"].__setitem__((0, 0), float("nan")), "W_dec holds NaN or inf"),
    ],
)
def test_an_inconsistent_dictionary_is_one_line(change, message):
    fields = {**{name: value for name, value in _weights().items() if name != "threshold"}, "activation": "topk", "k": 4}
    change(fields)
    with pytest.raises(InterpError, match=message):
        SparseDictionary(**fields)


def test_input_of_another_width_or_with_nan_is_refused():
    weights = _weights()
    dictionary = SparseDictionary(W_enc=weights["W_enc"], b_enc=weights["b_enc"], W_dec=weights["W_dec"],
                                  b_dec=weights["b_dec"], k=3, site="blocks.1.hook_resid_post")  # fmt: skip
    with pytest.raises(InterpError, match=r"reads vectors of width 12 \(blocks.1.hook_resid_post\), got \(2, 13\)"):
        dictionary.encode(torch.zeros(2, 13))
    with pytest.raises(InterpError, match="NaN or inf"):
        dictionary.encode(torch.full((2, D_IN), float("nan")))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "cfg.json").write_text("[" * 100_000), "cfg.json is not valid JSON"),
        (lambda d: (d / "cfg.json").write_text("[]"), "holds a JSON list"),
        (lambda d: (d / "cfg.json").unlink(), "has weights but no cfg.json"),
        (lambda d: (d / "sae_weights.safetensors").write_bytes(b"\x00" * 7), "not a readable safetensors file"),
        (lambda d: (d / "cfg.json").write_text(json.dumps({"architecture": "gated", "d_in": D_IN, "d_sae": D_SAE})), "architecture 'gated' is not supported"),
        (lambda d: (d / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": 5, "d_sae": D_SAE})), "the files do not belong together"),
        (lambda d: (d / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "normalize_activations": "expected_average_only_in"})), "normalize_activations"),
        (lambda d: (d / "cfg.json").write_text(json.dumps({"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE})), "lacks 'k'"),
    ],
)
def test_a_damaged_dictionary_directory_is_one_line(tmp_path, damage, message):
    directory, _ = _saelens_dir(tmp_path, "standard")
    damage(directory)
    with pytest.raises(InterpError, match=message):
        load_dictionary(directory)


def test_a_directory_without_a_dictionary_says_what_it_expects(tmp_path):
    with pytest.raises(InterpError, match="holds no dictionary: expected cfg.json with sae.safetensors"):
        load_dictionary(tmp_path)


def test_the_short_names_train_load_and_save(tmp_path):
    """interp.dictionaries.train / load are train_dictionary / load_dictionary; dictionary.save writes what load reads."""
    import interp.dictionaries as dictionaries

    assert dictionaries.train is dictionaries.train_dictionary and dictionaries.load is dictionaries.load_dictionary
    generator = torch.Generator().manual_seed(0)
    sae = SparseDictionary(W_enc=torch.randn(8, 16, generator=generator), b_enc=torch.zeros(16),
                           W_dec=torch.randn(16, 8, generator=generator), b_dec=torch.zeros(8), activation="topk", k=3,
                           site="blocks.0.hook_resid_post")  # fmt: skip
    for format in ("sparsify", "saelens"):
        loaded = dictionaries.load(sae.save(tmp_path / format, format=format))
        x = torch.randn(5, 8, generator=generator)
        assert torch.allclose(loaded.encode(x), sae.encode(x), atol=1e-6), format
