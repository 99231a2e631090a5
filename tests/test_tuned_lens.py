"""Tuned lens: identity == logit lens exactly, save/load, refusal on another model, training lowers KL; on SmolLM2 the paper's result."""

import json
import time
from pathlib import Path

import pytest
import torch

from conftest import PROMPTS
from interp.data import PromptSet
from interp.errors import InterpError
from interp.lens import LensKL, TunedLens, generate_texts, lens_kl, lens_sites, logit_lens, split_heldout, train_tuned_lens

FINDING = Path(__file__).resolve().parents[1] / "circuits" / "tuned_lens_smollm2"
TINY_TEXTS = PROMPTS + [
    "the dog ran to the park and the cat sat on the mat",
    "mary gave john a book , and john gave mary a pen",
    "one two three four five six seven eight nine ten",
    "how do i cook rice ? boil water , add rice , wait",
]
HELDOUT = ["the cat ran to the store", "john gave the dog a drink", "how do i bake a cake ?"]


def _random_lens(model, seed: int = 0) -> TunedLens:
    identity = TunedLens.identity(model)
    generator = torch.Generator().manual_seed(seed)
    weight = 0.3 * torch.randn(identity.weight.shape, generator=generator)
    bias = torch.randn(identity.bias.shape, generator=generator)
    weight[-1], bias[-1] = 0, 0
    return TunedLens(identity.sites, weight, bias, identity.provenance)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_identity_lens_is_the_logit_lens_exactly(arch, load_tiny):
    model = load_tiny(arch)
    plain = logit_lens(model, PROMPTS, positions="all", sites=["resid_pre", "resid_post"])
    tuned = logit_lens(model, PROMPTS, positions="all", sites=["resid_pre", "resid_post"], translator=TunedLens.identity(model))
    assert tuned.translator == "TunedLens" and tuned.sites == plain.sites
    for name in ("target_prob", "target_logprob", "target_rank", "kl_to_final", "top_ids", "top_probs"):
        assert torch.equal(getattr(tuned, name).nan_to_num(-1.0), getattr(plain, name).nan_to_num(-1.0)), f"{arch}: {name} differs under the identity lens"
    kl = lens_kl(model, PROMPTS, translator=TunedLens.identity(model), progress=False)
    assert kl.lenses == ("logit lens", "tuned lens") and torch.equal(kl.kl[0], kl.kl[1])


def test_resid_pre_reads_the_previous_layers_translator(load_tiny):
    model = load_tiny("llama")
    lens = _random_lens(model)
    x = torch.randn(3, 5, model.cfg.d_model)
    assert torch.equal(lens("blocks.1.hook_resid_pre", x), lens("blocks.0.hook_resid_post", x))
    assert not torch.allclose(lens("blocks.0.hook_resid_pre", x), lens("blocks.0.hook_resid_post", x))
    assert torch.equal(lens(lens.sites[-1], x), x), "the last layer's translator must stay the identity"
    result = logit_lens(model, PROMPTS[:3], sites=["resid_pre", "resid_post"], translator=lens)
    pre1, post0 = result.sites.index("blocks.1.hook_resid_pre"), result.sites.index("blocks.0.hook_resid_post")
    diff = (result.top_probs[pre1] - result.top_probs[post0]).abs().max().item()
    assert diff <= 1e-6, f"resid_pre 1 and resid_post 0 are one stream but decode {diff:.2e} apart"
    with pytest.raises(InterpError, match="no translator for blocks.0.hook_resid_mid"):
        logit_lens(model, PROMPTS[:1], sites=["resid_mid"], translator=lens)


def test_training_lowers_kl_at_every_layer_but_the_last(load_tiny):
    model = load_tiny("llama")
    from_identity = train_tuned_lens(model, TINY_TEXTS, init="identity", steps=40, lr=3e-3, batch_tokens=64, progress=False)
    loss = from_identity.training.loss
    assert len(loss) == 40 and sum(loss[-5:]) < 0.7 * sum(loss[:5]), f"Adam on the KL did not lower it: {loss[:3]} ... {loss[-3:]}"
    on_training_text = lens_kl(model, TINY_TEXTS, translator=from_identity, progress=False).kl
    assert torch.all(on_training_text[1, :-1] < on_training_text[0, :-1]), f"Adam from the identity: {on_training_text.tolist()}"
    lens = train_tuned_lens(model, TINY_TEXTS, steps=10, lr=1e-3, batch_size=4, progress=False)
    assert lens.training.init == "least_squares" and lens.training.n_tokens > 60
    assert lens.provenance.extra["capture"] == {"path": "plain-view", "reason": ""}, "the residuals were not read through the plain view"
    result = lens_kl(model, HELDOUT, translator=lens, progress=False)
    logit, tuned = result.kl
    print("\n" + result.table())
    assert torch.all(tuned[:-1] < logit[:-1]), f"tuned-lens KL {tuned.tolist()} is not below the logit lens's {logit.tolist()} on held-out text"
    assert float(tuned[-1]) == float(logit[-1]) and float(logit[-1]) <= 1e-5, "at the last layer both lenses are the model's own distribution"


def test_save_and_load_round_trip(load_tiny, tmp_path):
    model = load_tiny("llama")
    lens = train_tuned_lens(model, TINY_TEXTS[:4], steps=3, lr=1e-3, batch_tokens=16, progress=False)
    lens.save(tmp_path / "lens")
    assert {p.name for p in (tmp_path / "lens").iterdir()} >= {"tuned_lens.json", "tuned_lens.safetensors", "training.html"}
    meta = json.loads((tmp_path / "lens" / "tuned_lens.json").read_text())
    assert meta["format"] == "interp.tuned_lens" and meta["provenance"]["weights_hash"] == lens.provenance.weights_hash
    loaded = TunedLens.load(tmp_path / "lens", model=model)
    assert torch.equal(loaded.weight, lens.weight) and torch.equal(loaded.bias, lens.bias)
    assert loaded.sites == lens.sites == lens_sites(model.cfg.n_layers)
    assert loaded.training == lens.training and loaded.provenance == lens.provenance
    x = torch.randn(2, model.cfg.d_model)
    assert torch.equal(loaded("blocks.0.hook_resid_post", x), lens("blocks.0.hook_resid_post", x))


def test_a_lens_of_another_model_is_refused_naming_both(load_tiny, tmp_path):
    llama, qwen2 = load_tiny("llama"), load_tiny("qwen2")
    from interp.model import model_id

    lens = _random_lens(llama)
    lens.save(tmp_path / "lens")
    both = rf"trained on model '{model_id(llama)}' \(weights hash \w+\), but it is applied to model '{model_id(qwen2)}'"
    with pytest.raises(InterpError, match=both):
        TunedLens.load(tmp_path / "lens", model=qwen2)
    with pytest.raises(InterpError, match=both):
        logit_lens(qwen2, PROMPTS[:2], translator=lens)
    with pytest.raises(InterpError, match=both):
        lens_kl(qwen2, PROMPTS[:2], translator=lens, progress=False)
    gpt2 = load_tiny("gpt2")
    with pytest.raises(InterpError, match="applied to model"):
        logit_lens(gpt2, PROMPTS[:1], translator=lens)


def test_lens_kl_figure_table_and_round_trip(load_tiny, tmp_path):
    model = load_tiny("llama")
    result = lens_kl(model, PROMPTS[:3], translator=_random_lens(model), progress=False)
    assert result.site_labels == ("embed", "L0", "L1") and result.n_texts == 3
    figure = result.figure()
    assert [trace.name for trace in figure.data] == ["logit lens", "tuned lens"]
    assert list(figure.data[0].x) == ["embed", "L0", "L1"] and figure.layout.yaxis.type == "log"
    assert figure.data[1].y[:-1] == pytest.approx(result.kl[1, :-1].tolist()) and figure.data[1].y[-1] is None, "KL 0 is left off the log axis"
    assert "| L1 |" in result.table()
    result.save(tmp_path / "kl")
    assert {p.name for p in (tmp_path / "kl").iterdir()} >= {"lens_kl.json", "lens_kl.safetensors", "lens_kl.md", "lens_kl.html"}
    loaded = LensKL.load(tmp_path / "kl")
    assert torch.equal(loaded.kl, result.kl) and loaded.lenses == result.lenses and loaded.provenance == result.provenance


def test_generated_texts_continue_the_prompts_and_are_cached(load_tiny, tmp_path, monkeypatch):
    model = load_tiny("llama")
    prompts = PromptSet.from_records([{"text": "the quick brown fox", "split": "train"}, {"text": "a cat sat", "split": "heldout"}])
    texts = generate_texts(model, prompts, max_new_tokens=4, cache=tmp_path, progress=False)
    assert [record["prompt"] for record in texts] == prompts.texts and all(t.startswith(p) for t, p in zip(texts.texts, prompts.texts))
    assert generate_texts(model, prompts, max_new_tokens=4, progress=False).texts == texts.texts, "same seed, same text"
    monkeypatch.setattr(model.original_model, "generate", lambda *a, **k: pytest.fail("the cached texts were generated again"))
    assert generate_texts(model, prompts, max_new_tokens=4, cache=tmp_path, progress=False).texts == texts.texts
    train, heldout = split_heldout(texts)
    assert train.texts == texts.texts[:1] and heldout.texts == texts.texts[1:]


def test_bad_settings_are_refused(load_tiny):
    model = load_tiny("llama")
    with pytest.raises(InterpError, match="unknown tuned-lens init 'zeros'"):
        train_tuned_lens(model, PROMPTS[:2], init="zeros", progress=False)
    with pytest.raises(InterpError, match="all 2 texts are held out"):
        split_heldout(PromptSet.from_records([{"text": "a", "split": "heldout"}, {"text": "b", "split": "heldout"}]))
    with pytest.raises(InterpError, match="must be float32"):
        TunedLens(("a",), torch.zeros(1, 2, 2, dtype=torch.float64), torch.zeros(1, 2), TunedLens.identity(model).provenance)


def test_cli_lens_train_then_apply(load_tiny, tiny_model_dirs, tmp_path, capsys):
    from interp.cli import main
    from interp.lens import LensResult

    texts = tmp_path / "texts.jsonl"
    PromptSet.from_texts(TINY_TEXTS).to_jsonl(texts)
    model_dir = str(tiny_model_dirs["llama"])
    assert main(["lens", "train", "--model", model_dir, "--device", "cpu", "--texts", str(texts), "--steps", "3", "--out", str(tmp_path / "lens")]) == 0
    out = capsys.readouterr().out
    assert "tuned lens over 3 sites" in out and "| embed |" in out
    assert TunedLens.load(tmp_path / "lens").training.steps == 3
    assert LensKL.load(tmp_path / "lens" / "heldout_kl").lenses == ("logit lens", "tuned lens")
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS[:2]))
    assert main(["lens", "--model", model_dir, "--device", "cpu", "--prompts", str(prompts), "--translator", str(tmp_path / "lens"), "--out", str(tmp_path / "applied")]) == 0
    assert LensResult.load(tmp_path / "applied").translator == "TunedLens"
    assert main(["lens", "--model", str(tiny_model_dirs["qwen2"]), "--device", "cpu", "--prompts", str(prompts), "--translator", str(tmp_path / "lens"), "--out", str(tmp_path / "other")]) == 2
    assert "applied to model" in capsys.readouterr().err


def test_lens_train_flags_default_to_the_library():
    import inspect

    from interp.commands import build_parser

    args = build_parser().parse_args(["lens", "train", "--out", "x"])
    for function, pairs in ((train_tuned_lens, {"steps": "steps", "lr": "lr", "batch_tokens": "batch_tokens", "init": "init", "ridge": "ridge", "seed": "seed"}),
                            (generate_texts, {"new_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p", "generate_batch_size": "batch_size"}),
                            (split_heldout, {"heldout_fraction": "fraction"})):  # fmt: skip
        for flag, parameter in pairs.items():
            assert getattr(args, flag) == inspect.signature(function).parameters[parameter].default, flag
    assert build_parser().parse_args(["lens", "--out", "x"]).handler.__name__ == "run", "`interp lens` without train is still the logit lens"


def test_shapes_are_checked_at_runtime(load_tiny):
    """jaxtyping + beartype check the annotated shapes of the least-squares fit and the translator."""
    jaxtyping = pytest.importorskip("jaxtyping")
    beartype = pytest.importorskip("beartype")
    from interp.lens.tuned import _least_squares

    checked = jaxtyping.jaxtyped(typechecker=beartype.beartype)(_least_squares)
    weight, bias = checked(torch.randn(50, 8), torch.randn(50, 8), 1e-3)
    assert weight.shape == (8, 8) and bias.shape == (8,)
    with pytest.raises(Exception):
        checked(torch.randn(50, 8), torch.randn(50, 9), 1e-3)
    lens = _random_lens(load_tiny("llama"))
    assert jaxtyping.jaxtyped(typechecker=beartype.beartype)(lens.__call__)("blocks.0.hook_resid_post", torch.randn(4, 32)).shape == (4, 32)


def test_docstring_examples_run():
    import doctest

    import interp.lens.tuned

    assert doctest.testmod(interp.lens.tuned).failed == 0


# ---- the real model ------------------------------------------------------------------------------

REAL_TRAIN_TEXTS, REAL_HELDOUT_TEXTS, REAL_STEPS = 24, 3, 3  # ~1,650 / ~210 tokens, 3 Adam steps: about a minute on 2 CPU cores


def _real_texts(model, tmp_path) -> tuple[PromptSet, PromptSet]:
    """The finding's generated texts (circuits/tuned_lens_smollm2/texts.jsonl) when present, else a small set generated here."""
    cached = FINDING / "texts.jsonl"
    if cached.exists():
        texts = PromptSet.from_file(cached)
    else:
        prompts = PromptSet.from_file(Path(__file__).resolve().parents[1] / "assets" / "prompts" / "lens_prompts.jsonl")
        train, heldout = split_heldout(prompts)
        texts = generate_texts(model, PromptSet(train.records[:12] + heldout.records[:REAL_HELDOUT_TEXTS]), max_new_tokens=32, cache=tmp_path)
    train, heldout = split_heldout(texts)
    return PromptSet(train.records[:REAL_TRAIN_TEXTS]), PromptSet(heldout.records[:REAL_HELDOUT_TEXTS])


def test_tuned_lens_beats_the_logit_lens_on_held_out_text_of_smollm2(smollm2, tmp_path):
    """Belrose et al. 2023: on held-out text the tuned lens's KL to the final distribution is below the logit lens's at every layer but the last."""
    train, heldout = _real_texts(smollm2, tmp_path)
    started = time.perf_counter()
    lens = train_tuned_lens(smollm2, train, steps=REAL_STEPS, progress=False)
    trained = time.perf_counter() - started
    result = lens_kl(smollm2, heldout, translator=lens, progress=False)
    print(f"\ntrained on {lens.training.n_tokens} tokens in {trained:.0f} s; held-out KL on {result.n_tokens} tokens "
          f"(evaluated in {time.perf_counter() - started - trained:.0f} s):\n{result.table()}")  # fmt: skip
    logit, tuned = result.kl
    worse = [label for label, a, b in zip(result.site_labels[:-1], logit[:-1].tolist(), tuned[:-1].tolist()) if not b < a]
    assert not worse, f"the tuned lens is not below the logit lens at {worse}:\n{result.table()}"
    assert float(logit[-1]) <= 1e-4 and float(tuned[-1]) == float(logit[-1])
