"""circuit-tracer's transcoder sets (a YAML config, safetensors ReLU transcoders stored transposed, Gemma Scope's npz
JumpReLU ones) load as the same transcoders: equal codes by the formula, the same attribution graph."""

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from interp.dictionaries import SparseDictionary
from interp.errors import InterpError
from interp.graphs import attribute, load_transcoders


def _transcoder(d: int, layer: int, seed: int, jumprelu: bool) -> SparseDictionary:
    generator = torch.Generator().manual_seed(seed)
    d_sae = 24
    fields = {"activation": "jumprelu", "threshold": torch.full((d_sae,), 0.05)} if jumprelu else {"activation": "relu"}
    return SparseDictionary(W_enc=torch.randn(d, d_sae, generator=generator) / d**0.5, b_enc=torch.randn(d_sae, generator=generator) / 10,
                            W_dec=torch.randn(d_sae, d, generator=generator) / 8, b_dec=torch.randn(d, generator=generator) / 10,
                            W_skip=None if jumprelu else torch.randn(d, d, generator=generator) / 20, apply_b_dec_to_input=False,
                            site=f"blocks.{layer}.ln2.hook_normalized", output_site=f"blocks.{layer}.hook_mlp_out", **fields)  # fmt: skip


def _write_set(directory, dictionaries, **overrides) -> str:
    """Layer 0 as circuit-tracer's safetensors (matrices transposed), the others as Gemma Scope's npz."""
    entries = []
    for layer, transcoder in enumerate(dictionaries):
        if transcoder.activation == "relu":
            tensors = {"W_enc": transcoder.W_enc.T.contiguous(), "W_dec": transcoder.W_dec.T.contiguous(),
                       "b_enc": transcoder.b_enc, "b_dec": transcoder.b_dec, "W_skip": transcoder.W_skip}  # fmt: skip
            save_file(tensors, str(directory / f"layer_{layer}.safetensors"))
            entries.append({"id": f"l{layer}", "layer": layer, "filepath": f"layer_{layer}.safetensors"})
        else:
            arrays = {name: getattr(transcoder, name).numpy() for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")}
            np.savez(directory / f"layer_{layer}.npz", **arrays)
            entries.append({"id": f"l{layer}", "layer": layer, "filepath": str(directory / f"layer_{layer}.npz")})
    config = {"model_name": "tiny", "feature_input_hook": "mlp.hook_in", "feature_output_hook": "mlp.hook_out",
              "transcoders": entries, **overrides}  # fmt: skip
    path = directory / "transcoders.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_circuit_tracer_set_loads_as_the_same_transcoders_and_graph(load_tiny, tmp_path):
    model = load_tiny("llama")
    d = int(model.cfg.d_model)
    originals = [_transcoder(d, layer, seed=layer, jumprelu=layer > 0) for layer in range(int(model.cfg.n_layers))]
    loaded = load_transcoders(_write_set(tmp_path, originals), n_layers=int(model.cfg.n_layers))
    x = torch.randn(5, d, generator=torch.Generator().manual_seed(9))
    for original, found in zip(originals, loaded):
        pre = x @ original.W_enc + original.b_enc  # the formula, b_dec not subtracted
        expected = torch.relu(pre) if original.activation == "relu" else pre * (pre > original.threshold)
        assert torch.allclose(found.encode(x), expected, atol=1e-6)
        assert torch.allclose(found(x), original(x), atol=1e-6)
        assert (found.site, found.output_site) == (original.site, original.output_site)
    prompt = "the cat sat on the mat"
    assert torch.allclose(attribute(model, prompt, loaded, progress=False).adjacency,
                          attribute(model, prompt, originals, progress=False).adjacency, atol=1e-5)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"feature_input_hook": "hook_resid_mid"}, "feature_input_hook is 'hook_resid_mid'"),
        ({"transcoders": []}, "names no transcoders"),
        ({"transcoders": [{"layer": 0, "filepath": "nowhere.safetensors"}]}, "no transcoder file at"),
        ({"transcoders": [{"layer": "0", "filepath": "layer_0.safetensors"}]}, "needs an integer 'layer'"),
    ],
)
def test_bad_circuit_tracer_sets_are_one_line(load_tiny, tmp_path, change, message):
    model = load_tiny("llama")
    path = _write_set(tmp_path, [_transcoder(int(model.cfg.d_model), 0, 0, False)], **change)
    with pytest.raises(InterpError, match=message) as raised:
        load_transcoders(path)
    assert "\n" not in str(raised.value)


def test_a_set_missing_a_layer_or_with_a_damaged_file_is_one_line(load_tiny, tmp_path):
    model = load_tiny("llama")
    path = _write_set(tmp_path, [_transcoder(int(model.cfg.d_model), 0, 0, False)])
    with pytest.raises(InterpError, match="no transcoder for layer"):
        load_transcoders(path, n_layers=int(model.cfg.n_layers))
    (tmp_path / "layer_0.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InterpError, match="is not a readable transcoder file"):
        load_transcoders(path)
