"""Flags, tokens and API arguments that once ended in a traceback, a store written in vain, or a silent wrong answer:
each is now refused in one line before any work, or accepted and done."""

import json

import pytest
import torch

from interp.cli import main
from interp.data import PromptSet
from interp.errors import InterpError
from interp.metrics import logit_diff, one_token, probability

from conftest import PROMPTS


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in PROMPTS[:2]))
    return path


# ---- caching ---------------------------------------------------------------------------------------


def test_cache_with_no_hooks_is_refused_before_anything_is_written(prompt_file, tmp_path, capsys):
    assert main(["cache", "--prompts", str(prompt_file), "--hooks", "", "--out", str(tmp_path / "c")]) == 2
    assert "no hooks to cache: give at least one hook name" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_cache_of_the_embedding_alone_succeeds_without_an_overview(prompt_file, tmp_path, capsys):
    assert main(["cache", "--prompts", str(prompt_file), "--hooks", "embed", "--out", str(tmp_path / "c")]) == 0
    assert "no overview figure" in capsys.readouterr().out and (tmp_path / "c" / "manifest.json").exists()


# ---- tokens ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lens", "--target", ""], "the target is an empty string, which is no token"),
        (["lens", "--target", "99999"], "target '99999' is not in the vocabulary: the tokenizer reads it as its unknown token"),
        (["lens", "--target", "id:99999"], "target token id 99999 is outside the vocabulary"),
        (["dla", "--answer", "🦄🦄"], "answer '🦄🦄' is not in the vocabulary"),
        (["dla", "--answer", "99999"], "pass a token id instead (id:123, or an int in Python)"),
    ],
)
def test_a_token_that_is_no_token_of_the_vocabulary_is_refused(argv, message, prompt_file, tmp_path, capsys):
    source = ["--prompts", str(prompt_file)] if argv[0] == "lens" else ["--prompt", PROMPTS[0]]
    assert main([argv[0], *source, *argv[1:], "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_token_id_is_given_as_id_colon_n(load_tiny):
    tokenizer = load_tiny("llama").tokenizer
    assert one_token("id:5", tokenizer) == 5
    word = tokenizer.decode([7])
    assert one_token(word, tokenizer) == 7 or len(tokenizer.encode(word, add_special_tokens=False)) != 1


class ShiftedTokenizer:
    """Another tokenizer: every word one id further along than in ``base``."""

    unk_token_id = None

    def __init__(self, base):
        self.base = base

    def encode(self, text, add_special_tokens=False):
        return [token + 1 for token in self.base.encode(text, add_special_tokens=add_special_tokens)]

    def decode(self, ids):
        return self.base.decode([token - 1 for token in ids])


def test_a_metric_built_with_another_tokenizer_is_refused_by_patching(load_tiny):
    from interp.patching import activation_patching

    model = load_tiny("gpt2")
    word, other = [text for text in (" the", " a", " and", " of", " to") if len(model.tokenizer.encode(text, add_special_tokens=False)) == 1][:2]
    tokens = model.to_tokens(PROMPTS[:1])
    metric = probability(word, ShiftedTokenizer(model.tokenizer))
    with pytest.raises(InterpError, match=rf"was built with another tokenizer: {word!r} is id \d+ there but id \d+ for this model"):
        activation_patching(model, tokens, tokens, metric, site="resid_pre", progress=False)
    with pytest.raises(InterpError, match="was built with another tokenizer"):
        activation_patching(model, tokens, tokens, logit_diff(word, other, ShiftedTokenizer(model.tokenizer)), site="resid_pre", progress=False)
    activation_patching(model, tokens, tokens, probability(word, model.tokenizer), site="resid_pre", progress=False)
    activation_patching(model, tokens, tokens, logit_diff(3, 4), site="resid_pre", progress=False)  # ids: nothing to check


# ---- API arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_steering_with_a_non_finite_direction_is_refused(load_tiny, bad):
    from interp.probes import steer

    model = load_tiny("llama")
    direction = torch.zeros(model.cfg.d_model)
    direction[0] = bad
    with pytest.raises(InterpError, match="the direction holds NaN or inf values"):
        with steer(model, direction, alpha=1.0, hook="blocks.0.hook_resid_post"):
            pass
    with pytest.raises(InterpError, match="alpha must be a finite number"):
        with steer(model, torch.ones(model.cfg.d_model), alpha=bad, hook="blocks.0.hook_resid_post"):
            pass


@pytest.mark.parametrize(
    "labels", [[1, "1"], [1, True], ["benign", 0], [True, "true"]], ids=["number-text", "number-bool", "text-number", "bool-text"]
)
def test_labels_of_mixed_kinds_are_refused(labels):
    with pytest.raises(InterpError, match=r"the labels mix kinds: prompt 0 has .*, prompt 1 has .*write every label alike"):
        PromptSet.from_texts(["a b", "c d"], labels=labels)


def test_labels_of_one_kind_pass():
    assert PromptSet.from_texts(["a", "b", "c"], labels=[1, 0.0, None]).labels == [1, 0.0, None]


# ---- TOML and --set nested past the parser's depth -------------------------------------------------


def test_toml_nested_too_deeply_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "nests arrays or tables too deeply to read" in capsys.readouterr().err


def test_a_set_value_nested_too_deeply_is_one_line(tmp_path, capsys):
    path = tmp_path / "lens.toml"
    path.write_text('analysis = "lens"\n[prompts]\npath = "p.jsonl"\n')
    deep = "[" * 100_000 + "]" * 100_000
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--set", f"top_k={deep}"]) == 2
    assert "--set top_k: the value nests arrays or tables too deeply" in capsys.readouterr().err


# ---- outputs ---------------------------------------------------------------------------------------


def test_an_out_name_longer_than_a_file_name_may_be_is_one_line(prompt_file, tmp_path, capsys):
    assert main(["lens", "--prompts", str(prompt_file), "--out", str(tmp_path / ("x" * 300))]) == 2
    assert "is 300 bytes long, longer than a file name may be (255)" in capsys.readouterr().err


def test_dla_checks_the_pattern_head_before_writing_its_result(tmp_path, capsys):
    assert main(["dla", "--prompt", PROMPTS[0], "--pattern", "9.9", "--out", str(tmp_path / "d")]) == 2
    assert "layer 9 does not exist" in capsys.readouterr().err and not (tmp_path / "d").exists()


@pytest.mark.parametrize("inside", ["", "shards", "lens"])
def test_no_result_is_written_into_a_store(prompt_file, tmp_path, capsys, inside):
    store = tmp_path / "store"
    assert main(["cache", "--prompts", str(prompt_file), "--out", str(store)]) == 0
    before = sorted(path.name for path in store.rglob("*"))
    assert main(["lens", "--store", str(store), "--out", str(store / inside)]) == 2
    assert f"lies inside the activation store {store}" in capsys.readouterr().err
    assert sorted(path.name for path in store.rglob("*")) == before
    assert main(["cache", "--prompts", str(prompt_file), "--out", str(store), "--resume"]) == 0  # its writer may


def test_the_lens_help_names_every_kind_of_site_it_accepts(capsys):
    assert main(["lens", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "or a sublayer's output (attn_out, mlp_out)" in text


@pytest.mark.parametrize("command", [["lens"], ["dla"], ["patch"], ["probe", "train"]])
def test_the_commands_that_replace_their_result_say_so(command, capsys):
    assert main([*command, "--help"]) == 0
    assert "an earlier result of this command there is replaced" in " ".join(capsys.readouterr().out.split())
