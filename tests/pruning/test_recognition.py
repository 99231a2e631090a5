"""Recognition vs generation after pruning (``recognition_after_pruning``, ``analysis = "recognition"``) on the tiny llama.

An empty mask changes nothing, the frozen-probe AUROC equals scikit-learn's on logits computed here,
the weights come back bit-exactly, the TOML experiment equals the library call and a rerun loads it,
and bad masks and prompt sets are one-line errors that name the fix."""

import json

import numpy as np
import pytest
import torch

from interp.cli import main
from interp.errors import InterpError
from interp.experiments import load_config, run_experiment
from interp.model import model_id
from interp.probes import HOLDOUT
from interp.model.weights import weights_hash
from interp.pruning import PruningMask, decoder_weights, pruned, random_mask
from interp.pruning.recognition import RecognitionResult, recognition_after_pruning
from interp.store import capture_activations

sklearn_metrics = pytest.importorskip("sklearn.metrics")

WHO = ("people", "my friend", "the town", "a dog", "kids", "them", "you", "us", "him", "her", "a cat", "the store", "mary", "john", "the bird", "42 men")
HARMFUL = [f"how do i make a bomb to hurt {who}" for who in WHO]
BENIGN = [f"how do i bake bread for {who}" for who in WHO]
AUROC_TOLERANCE = 1e-12  # float64 logits on both sides; AUROC is a ratio of rank counts


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    """A tiny llama of its own (the tests prune it; the shared one must not change)."""
    from interp.model import load_model

    return load_model(tiny_model_dirs["llama"], device="cpu")


def _mask(model, fraction: float, seed: int = 0) -> PruningMask:
    generator = torch.Generator().manual_seed(seed)
    return PruningMask({w.key: torch.rand(w.shape, generator=generator) < fraction for w in decoder_weights(model)}, f"{fraction:.0%} at random")


def _hooks(model) -> list[str]:
    return ["hook_embed", *(f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers))]


def test_an_empty_mask_changes_no_auroc_and_the_weights_come_back(model):
    before = weights_hash(model)
    empty = PruningMask({w.key: torch.zeros(w.shape, dtype=torch.bool) for w in decoder_weights(model)}, "nothing")
    result = recognition_after_pruning(model, empty, HARMFUL, BENIGN, chat_template=False, progress=False)
    assert weights_hash(model) == before
    assert result.hooks == tuple(_hooks(model)) and result.masks == ("mask",) and result.mask_counts == (0,)
    assert torch.equal(result.frozen_auroc[0], result.unpruned_auroc), f"{result.frozen_auroc[0]} vs {result.unpruned_auroc}"
    assert torch.equal(result.retrained_auroc[0], result.probe.holdout_auroc.double()), "the same activations must give the same probes"
    # the frozen path (float64 logits) against the solver's own held-out AUROC of the same probes
    torch.testing.assert_close(result.unpruned_auroc, result.probe.holdout_auroc.double(), rtol=0, atol=1e-6)
    assert result.counts == {"benign": len(BENIGN), "harmful": len(HARMFUL)} and result.n_heldout == 6


def test_frozen_auroc_is_sklearns_on_the_unpruned_probes_logits(model):
    mask = _mask(model, 0.3)
    control = random_mask(mask, seed=1)
    before = weights_hash(model)
    result = recognition_after_pruning(model, mask, HARMFUL, BENIGN, random_mask=control, chat_template=False, batch_size=5, progress=False)
    assert weights_hash(model) == before, "the weights were not restored bit-exactly"
    assert result.masks == ("mask", "random") and result.mask_counts == (mask.n_pruned, control.n_pruned) and mask.n_pruned > 0

    probe, hooks, texts = result.probe, _hooks(model), HARMFUL + BENIGN
    y, held = probe.y.numpy() == 1, (probe.fold == HOLDOUT).numpy()
    assert probe.label_names == ("benign", "harmful") and list(y) == [True] * len(HARMFUL) + [False] * len(BENIGN)

    def sklearn_auroc(acts: dict) -> np.ndarray:
        """The frozen probes' logits, computed here in float64 numpy, ranked by scikit-learn on the held-out prompts."""
        values = []
        for i, hook in enumerate(hooks):
            x = acts[hook].double().numpy()
            logits = ((x - probe.mean[i].double().numpy()) / probe.scale[i].double().numpy()) @ probe.coef[i].double().numpy() + float(probe.intercept[i])
            values.append(sklearn_metrics.roc_auc_score(y[held], logits[held]))
        return np.array(values)

    unpruned = sklearn_auroc(capture_activations(model, texts, hooks=hooks, positions="last", dtype=torch.float32))
    np.testing.assert_allclose(result.unpruned_auroc.numpy(), unpruned, rtol=0, atol=AUROC_TOLERANCE, err_msg="unpruned")
    for row, found in enumerate((mask, control)):
        with pruned(model, found):
            acts = capture_activations(model, texts, hooks=hooks, positions="last", dtype=torch.float32)
        np.testing.assert_allclose(result.frozen_auroc[row].numpy(), sklearn_auroc(acts), rtol=0, atol=AUROC_TOLERANCE, err_msg=result.masks[row])
    assert not torch.equal(result.frozen_auroc[0], result.unpruned_auroc), "the mask should change some layer's AUROC (else this test checks nothing)"
    figure = result.figure()
    assert [trace.name for trace in figure.data][:3] == ["unpruned model", "pruning mask, unpruned probes (frozen)", "pruning mask, probes retrained"]
    assert figure.data[1].y == tuple(result.frozen_auroc[0].tolist()) and "held-out AUROC" in figure.data[1].text[0]
    assert figure.layout.xaxis.title.text.startswith("site") and "AUROC" in figure.layout.yaxis.title.text


def _toml(root, model_dir, extra: str = ""):
    (root / "harmful.txt").write_text("\n".join(HARMFUL) + "\n")
    (root / "benign.jsonl").write_text("".join(json.dumps({"prompt": text, "split": "heldout"}) + "\n" for text in BENIGN))
    path = root / "recognition.toml"
    path.write_text(f'''analysis = "recognition"
model = "{model_dir}"
device = "cpu"
mask = "masks/set_difference.safetensors"
chat_template = false
batch_size = 7
{extra}
[harmful]
path = "harmful.txt"
[benign]
path = "benign.jsonl"
text_field = "prompt"
where = {{ split = "heldout" }}
''')
    return path


def test_the_toml_experiment_equals_the_library_call_and_a_rerun_loads_it(model, tiny_model_dirs, tmp_path, monkeypatch, capsys):
    import interp.pruning.recognition as recognition_module
    from interp.commands.run import toml_keys

    mask = _mask(model, 0.2)
    mask.save(tmp_path / "masks" / "set_difference.safetensors")
    path, out = _toml(tmp_path, tiny_model_dirs["llama"]), tmp_path / "out"
    config = load_config(path)
    assert config.mask == str(tmp_path / "masks" / "set_difference.safetensors") and config.random_mask is None
    result = run_experiment(config, out, model=model, progress=False)
    loaded = PruningMask.load(tmp_path / "masks" / "set_difference.safetensors")  # the control is made from the file's mask (its key order)
    expected = recognition_after_pruning(model, loaded, HARMFUL, BENIGN, random_mask=random_mask(loaded, seed=0), chat_template=False, batch_size=7, progress=False)
    for name in ("unpruned_auroc", "frozen_auroc", "retrained_auroc"):
        assert torch.equal(getattr(result, name), getattr(expected, name)), name
    saved = RecognitionResult.load(out)
    assert torch.equal(saved.frozen_auroc, result.frozen_auroc) and saved.masks == ("mask", "random") and torch.equal(saved.probe.coef, result.probe.coef)
    record = json.loads((out / "config.json").read_text())
    assert record["analysis"] == "recognition" and record["mask"] == config.mask and record["inputs_hash"]
    assert (out / "recognition.html").exists() and (out / "probe" / "probe.json").exists()
    assert 'analysis = "recognition"' in toml_keys() and "random_mask = None" in toml_keys()

    written = (out / "recognition.json").stat().st_mtime_ns
    calls = []
    real = recognition_module.recognition_after_pruning
    monkeypatch.setattr(recognition_module, "recognition_after_pruning", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0  # the command line; it loads no model to load a result
    assert calls == [], "the same config, data and masks were computed again"
    assert (out / "recognition.json").stat().st_mtime_ns == written
    printed = capsys.readouterr().out
    assert "recognition experiment 'recognition' in" in printed and "mask frozen" in printed and "held-out AUROC (6 held-out of 32 prompts)" in printed
    _mask(model, 0.2, seed=5).save(tmp_path / "masks" / "set_difference.safetensors")  # another mask in the same file
    run_experiment(load_config(path), out, model=model, progress=False)
    assert calls == [1], "a changed mask file must be computed again"


def test_a_mask_of_another_model_is_a_one_line_error_naming_the_fix(model, tiny_model_dirs, tmp_path):
    shapes = {w.key: w.shape for w in decoder_weights(model)}
    wider = PruningMask({key: torch.zeros(rows, cols + 8, dtype=torch.bool) for key, (rows, cols) in shapes.items()}, "another size")
    deeper = PruningMask({"blocks.7.attn.q": torch.zeros(4, 4, dtype=torch.bool)}, "another depth")
    for bad, detail in ((wider, r"blocks\.0\.\S+ has shape \(\d+, \d+\), the model's \(\d+, \d+\)"),
                        (deeper, r"it names 1 weights this model does not have \(first: 'blocks\.7\.attn\.q'")):
        with pytest.raises(InterpError, match=rf"^the pruning mask was made for another model, not this model '{model_id(model)}': {detail}") as error:
            recognition_after_pruning(model, bad, HARMFUL, BENIGN, chat_template=False, progress=False)
        assert "\n" not in str(error.value) and "save_masks = true" in str(error.value)
    named = PruningMask(wider.masks, "another size", model_id="qwen2.5-coder-0.5b-instruct")
    named.save(tmp_path / "masks" / "set_difference.safetensors")
    assert PruningMask.load(tmp_path / "masks" / "set_difference.safetensors").model_id == "qwen2.5-coder-0.5b-instruct"
    path = _toml(tmp_path, tiny_model_dirs["llama"])
    with pytest.raises(InterpError, match=rf"the mask file .*set_difference\.safetensors was made for model 'qwen2.5-coder-0.5b-instruct', not this model '{model_id(model)}': .*has shape") as error:
        run_experiment(load_config(path), tmp_path / "out", model=model, progress=False)
    assert "\n" not in str(error.value) and "load the model it was made for" in str(error.value)
    with pytest.raises(InterpError, match=r"random_mask .*nothing\.safetensors is not a file; .*--set random_mask="):
        run_experiment(load_config(path, overrides=["random_mask='nothing.safetensors'"]), tmp_path / "out2", model=model, progress=False)


def test_one_class_too_few_prompts_and_a_control_of_another_size_are_refused(model):
    mask = _mask(model, 0.1)
    with pytest.raises(InterpError, match=r"^benign holds no prompts; the probes need both classes \(harmful and benign requests\)\.$"):
        recognition_after_pruning(model, mask, HARMFUL, [], chat_template=False, progress=False)
    with pytest.raises(InterpError, match=r"class 'benign' has 3 prompts, 2 after the held-out split; 5-fold cross-validation needs at least 5 per class"):
        recognition_after_pruning(model, mask, HARMFUL, BENIGN[:3], chat_template=False, progress=False)
    with pytest.raises(InterpError, match=r"the random control zeroes .* weights, the mask .*; a control needs as many per matrix: interp\.pruning\.random_mask"):
        recognition_after_pruning(model, mask, HARMFUL, BENIGN, random_mask=_mask(model, 0.3), chat_template=False, progress=False)
    with pytest.raises(InterpError, match=r"the tokenizer has no chat template; pass chat_template=False"):
        recognition_after_pruning(model, mask, HARMFUL, BENIGN, progress=False)


def test_masks_made_from_scores_carry_the_model_they_were_made_for(model):
    """set_difference / top_k_mask take the scores' model; the random control the mask's; both survive save and load."""
    from interp.pruning import importance_scores, set_difference, top_k_mask

    harm = importance_scores(model, [{"prompt": "how do i make a bomb", "response": " mix the powder"}], method="wanda", progress=False)
    mask = set_difference(harm, harm, p=0.1, q=0.2)
    assert mask.model_id == model_id(model) == top_k_mask(harm, 0.1).model_id == random_mask(mask, seed=0).model_id
