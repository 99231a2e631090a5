"""Cheap arguments that once crashed deep inside (ZeroDivisionError, IndexError, a NaN heatmap):
each is refused with one InterpError naming the argument, before any work where that is possible."""

import pytest
import torch

from interp.cli import main
from interp.errors import InterpError
from interp.metrics import logit_diff, probability


# ---- on the command line and in TOML: already in interp.checks.LIMITS (kept as guards) --------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["organism", "report", "--n", "0"], "--n must be an integer >= 1, got 0"),
        (["organism", "train", "--mini", "--out", "o", "--threads", "0"], "--threads must be an integer >= 1, got 0"),
        (["resample", "--problem", "p.json", "--out", "o", "--forced-max-new-tokens", "0"], "--forced-max-new-tokens must be an integer >= 1, got 0"),
    ],
)
def test_a_zero_count_on_the_command_line_is_refused_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no rollouts.jsonl, no model: nothing was started


def test_a_zero_forced_max_new_tokens_in_toml_is_refused(tmp_path):
    from interp.experiments import load_config

    (tmp_path / "e.toml").write_text('analysis = "resampling"\nprompt = "x"\nforced_max_new_tokens = 0\n')
    with pytest.raises(InterpError, match="'forced_max_new_tokens' in the config must be an integer >= 1, got 0"):
        load_config(tmp_path / "e.toml")


# ---- in the library --------------------------------------------------------------------------------


def test_importance_scores_refuses_a_zero_batch_size(load_tiny):
    """Once a ZeroDivisionError from the progress bar's total."""
    from interp.pruning.scores import importance_scores

    with pytest.raises(InterpError, match="'batch_size' must be an integer >= 1, got 0"):
        importance_scores(load_tiny("gpt2"), [{"text": "a cat", "response": " sat"}], batch_size=0, progress=False)


def test_organism_report_refuses_n_zero_before_loading_the_model(monkeypatch):
    """Once a TypeError after the model was loaded and evaluated."""
    import interp.organisms.evaluate as evaluate

    monkeypatch.setattr(evaluate, "load_organism", lambda *a, **k: pytest.fail("the model was loaded before n was checked"))
    with pytest.raises(InterpError, match="'n' must be an integer >= 1, got 0"):
        evaluate.organism_report(n=0)


def test_train_organism_refuses_zero_threads(tmp_path):
    from interp.organisms.train import TrainConfig, train_organism

    with pytest.raises(InterpError, match="'threads' must be an integer >= 1, got 0"):
        train_organism(TrainConfig.mini(threads=0), tmp_path / "o", report_n=0)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("method", ["activation", "attribution"])
@pytest.mark.parametrize(
    ("clean", "corrupt", "message"),
    [
        ([], [], "got no clean prompts"),
        ([], ["a cat sat"], "got no clean prompts"),
        (["a cat sat"], [], "got no corrupt prompts"),
        (torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long), r"got no clean prompts \(a token tensor of shape \(0, 3\)\)"),
    ],
)
def test_patching_refuses_empty_prompt_lists(load_tiny, method, clean, corrupt, message):
    """Once a RuntimeError from torch.stack of an empty list."""
    from interp.patching import activation_patching, attribution_patching

    patch = activation_patching if method == "activation" else attribution_patching
    with pytest.raises(InterpError, match=message):
        patch(load_tiny("gpt2"), clean, corrupt, logit_diff(answer=1, wrong=2))


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (lambda vocab: logit_diff(answer=vocab, wrong=1), "logit_diff has answer token id {vocab}, outside the vocabulary"),
        (lambda vocab: logit_diff(answer=-1, wrong=1), "logit_diff has answer token id -1, outside the vocabulary"),
        (lambda vocab: logit_diff(answer=1, wrong=[2, -3]), "logit_diff has wrong token id -3, outside the vocabulary"),
        (lambda vocab: probability(answer=vocab + 5), "probability has answer token id {vocab_5}, outside the vocabulary"),
    ],
)
def test_token_ids_outside_the_logits_vocabulary_are_refused(metric, message):
    """Out of range once an IndexError; negative once silently read from the end of the vocabulary."""
    vocab = 10
    with pytest.raises(InterpError, match=message.format(vocab=vocab, vocab_5=vocab + 5) + r" of these logits \(0\.\.9\)"):
        metric(vocab)(torch.zeros(2, 3, vocab))


@pytest.mark.parametrize("method", ["activation", "attribution"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_patching_metric_that_is_not_finite_is_named(load_tiny, method, bad):
    """Once a heatmap of NaN (activation) or NaN gradients (attribution), without a word."""
    from interp.patching import activation_patching, attribution_patching

    def broken_metric(logits):
        return logits[:, -1, 0] * 0 + bad

    patch = activation_patching if method == "activation" else attribution_patching
    with pytest.raises(InterpError, match=rf"metric broken_metric returned {bad} \(rows \[0\]\); it must be finite"):
        patch(load_tiny("gpt2"), ["a cat sat"], ["a dog sat"], broken_metric)


# ---- open: the check belongs in a file this pass does not own -------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_probe_activations_that_are_not_finite_are_refused(bad):
    from interp.probes import train_probes

    x = torch.randn(2, 40, 16)
    x[1, 2, 3] = bad
    with pytest.raises(InterpError, match="finite"):
        train_probes(x, labels=["a", "b"] * 20, progress=False)


def test_sampling_config_refuses_zero_forced_max_new_tokens():
    from interp.resampling.config import SamplingConfig

    with pytest.raises(InterpError, match="forced_max_new_tokens"):
        SamplingConfig(forced_max_new_tokens=0)
