"""A model whose layers sit in several places (``load_model(..., device_map=...)``) gives the same results as on one device.

On a CPU-only machine the places are the CPU and the disk (weights offloaded to ``offload_folder``,
loaded by accelerate's hooks for each forward); the GPU tests split over CUDA devices.
"""

import pytest
import torch

from interp import load_model
from interp.errors import InterpError
from interp.model.weights import weights_hash

PROMPTS = ["the quick brown fox jumps over", "a lazy dog sat on the mat and"]
TOLERANCE = 1e-5  # the bound on CPU; the values are in fact equal


@pytest.fixture(scope="module")
def placed(tiny_model_dirs, tmp_path_factory):
    """(the tiny Llama on one device, the same with layer 1 offloaded to disk and the rest on the CPU)."""
    path = str(tiny_model_dirs["llama"])
    device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", "model.norm": "cpu",
                  "model.rotary_emb": "cpu", "lm_head": "cpu"}  # fmt: skip
    split = load_model(path, device_map=device_map, offload_folder=tmp_path_factory.mktemp("offload"))
    return load_model(path, device="cpu"), split


def test_the_split_model_is_the_same_model(placed):
    single, split = placed
    assert split.original_model.hf_device_map["model.layers.1"] == "disk"
    assert weights_hash(split) == weights_hash(single), "offloaded weights are hashed from where they are kept"
    tokens = single.to_tokens(PROMPTS[0])
    with torch.no_grad():
        assert (split(tokens) - single(tokens)).abs().max() <= TOLERANCE


def test_lens_dla_and_the_store_agree(placed, tmp_path):
    from interp import cache_activations, logit_lens
    from interp.mechanisms.dla import direct_logit_attribution

    single, split = placed
    lens = [logit_lens(model, PROMPTS, positions="all") for model in placed]
    assert (lens[0].target_prob - lens[1].target_prob).nan_to_num().abs().max() <= TOLERANCE
    dla = [direct_logit_attribution(model, PROMPTS, answer=" the", wrong=" a") for model in placed]
    assert (dla[0].head_values - dla[1].head_values).abs().max() <= TOLERANCE
    stores = [cache_activations(model, PROMPTS, hooks=["resid_post", "attn_out"], out=tmp_path / name, progress=False)
              for model, name in zip(placed, ("single", "split"))]  # fmt: skip
    for hook in stores[0].hooks:
        assert (stores[0][hook] - stores[1][hook]).abs().max() <= TOLERANCE, hook


def test_patching_agrees_fast_path_included(placed):
    from interp.metrics import logit_diff
    from interp.patching import activation_patching, attribution_patching

    single, split = placed
    clean, corrupt = single.to_tokens(PROMPTS), single.to_tokens(["the quick brown cat jumps over", "a lazy cat sat on the mat and"])
    metric = logit_diff(answer=[5, 6], wrong=[7, 8])
    for site in ("resid_pre", "attn_head_out"):
        results = [activation_patching(model, clean, corrupt, metric, site=site, progress=False) for model in placed]
        assert results[0].fast_path and results[1].fast_path, results[1].fallback_reason
        assert (results[0].values - results[1].values).abs().max() <= TOLERANCE, site
    linear = [attribution_patching(model, clean, corrupt, metric, site="attn_head_out") for model in placed]
    assert (linear[0].values - linear[1].values).abs().max() <= TOLERANCE


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        ({"device_map": {"model.layers.0": "cuda:3"}}, r"puts model.layers.0 on cuda:3, but this machine has \d+ CUDA device"),
        ({"device_map": {"model.layers.0": 7}}, r"puts model.layers.0 on cuda:7"),
        ({"device_map": {"model.layers.0": "disk"}}, "pass offload_folder=DIR"),
        ({"device_map": {"model.layers.0": "meta"}}, "holds no weights"),
        ({"device_map": {"model.layers.0": "tpu"}}, "not a device"),
        ({"device_map": "auto", "device": "cpu"}, "not both"),
        ({"max_memory": {"cpu": "1GiB"}}, "only apply with device_map"),
        ({"n_devices": 99}, "n_devices=99 but this machine has"),
    ],
)
def test_bad_placements_are_one_line_errors(tiny_model_dirs, placement, message):
    if torch.cuda.device_count() > 7 and "cuda" in message:
        pytest.skip("this machine has that many GPUs")
    with pytest.raises(InterpError, match=message) as error:
        load_model(str(tiny_model_dirs["llama"]), **placement)
    assert "\n" not in str(error.value)


def test_pruning_refuses_weights_offloaded_to_disk(placed):
    from interp.pruning import importance_scores

    with pytest.raises(InterpError, match=r"blocks.1.* was offloaded by the device map .* load the model with every layer on a device"):
        importance_scores(placed[1], [{"text": "the quick brown fox", "response": " jumps over"}])
