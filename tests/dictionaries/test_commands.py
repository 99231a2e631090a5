"""interp dictionary train | eval | show and analysis = "dictionary", end to end on a tiny model."""

import json

from interp.cli import main
from interp.dictionaries import load_dictionary
from interp.dictionaries.evaluate import DictionaryEval
from interp.experiments import load_config, run_experiment

from conftest import PROMPTS

SITE = "blocks.1.hook_resid_post"


def _prompt_file(path, texts):
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return path


def test_train_show_and_eval_on_the_command_line(tiny_model_dirs, tmp_path, capsys):
    model = str(tiny_model_dirs["llama"])
    prompts = _prompt_file(tmp_path / "p.jsonl", PROMPTS * 2)
    assert main(["cache", "--model", model, "--prompts", str(prompts), "--positions", "all", "--hooks", "resid_post",
                 "--out", str(tmp_path / "store")]) == 0  # fmt: skip
    train = ["dictionary", "train", "--store", str(tmp_path / "store"), "--site", SITE, "--expansion", "2", "--k", "4",
             "--batch-size", "32", "--max-tokens", "320", "--checkpoint-every", "5", "--out", str(tmp_path / "sae"),
             "--quiet"]  # fmt: skip
    assert main(train) == 0
    assert "a sparse autoencoder of" in capsys.readouterr().out
    assert load_dictionary(tmp_path / "sae").k == 4
    assert main(["dictionary", "show", str(tmp_path / "sae")]) == 0
    shown = capsys.readouterr().out
    assert f"on {SITE}" in shown and "k = 4" in shown and f"model {model}" in shown
    assert main(["dictionary", "eval", "--dictionary", str(tmp_path / "sae"), "--model", model, "--prompts", str(prompts),
                 "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    assert "CE loss recovered" in capsys.readouterr().out
    assert DictionaryEval.load(tmp_path / "eval").site == SITE and (tmp_path / "eval" / "features.html").exists()
    assert main([*train[:-3], "--k", "5", "--out", str(tmp_path / "sae"), "--quiet"]) == 2  # other settings, same --out
    assert "holds a training run of other settings" in capsys.readouterr().err


def test_a_dictionary_toml_trains_evaluates_and_is_reused(tiny_model_dirs, load_tiny, tmp_path, monkeypatch):
    from interp.data import PromptSet
    from interp.store import cache_activations

    model = load_tiny("llama")
    cache_activations(model, PromptSet.from_texts(PROMPTS * 2), hooks=["resid_post"], positions="all",
                      out=tmp_path / "store", progress=False)  # fmt: skip
    _prompt_file(tmp_path / "heldout.jsonl", PROMPTS[:3])
    (tmp_path / "sae.toml").write_text(
        f'analysis = "dictionary"\nmodel = "{tiny_model_dirs["llama"]}"\ndevice = "cpu"\nstore = "store"\n'
        f'site = "{SITE}"\nexpansion = 2\nk = 4\nbatch_size = 32\nmax_tokens = 320\n[evaluation]\npath = "heldout.jsonl"\n'
    )
    config = load_config(tmp_path / "sae.toml")
    evaluation = run_experiment(config, tmp_path / "out", progress=False)
    assert isinstance(evaluation, DictionaryEval) and evaluation.n_tokens > 0
    assert (tmp_path / "out" / "features.html").exists() and (tmp_path / "out" / "dictionary" / "sae.safetensors").exists()
    import interp.dictionaries.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "evaluate_dictionary", lambda *a, **k: (_ for _ in ()).throw(AssertionError("evaluated again")))
    assert run_experiment(config, tmp_path / "out", progress=False).summary() == evaluation.summary()
