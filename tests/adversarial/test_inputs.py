"""Awkward but legal inputs and interrupted or concurrent runs: line separators in prompts, an existing
--out for training, torn JSONL logs, a kill before the store's manifest, two writers on one store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interp.cli import main
from interp.data import PromptSet
from interp.errors import InterpError
from interp.store import ActivationStore, cache_activations

from conftest import PROMPTS

LOCK = ".interp.lock"  # interp.store.LOCK: the lock file a store's writer holds
SEPARATORS = ["line\u2028separator", "paragraph\u2029separator", "next\u0085line", "form\x0cfeed and \x1cfile separator"]


# ---- item 4: U+2028 / U+2029 / U+0085 inside a prompt ----------------------------------------------


def test_a_store_reads_back_prompts_holding_line_separators(tiny_model_dirs, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": text, "label": str(i)}, ensure_ascii=False) + "\n" for i, text in enumerate(SEPARATORS)), encoding="utf-8")
    assert PromptSet.from_file(prompts).texts == SEPARATORS
    out = tmp_path / "acts"
    assert main(["cache", "--model", str(tiny_model_dirs["gpt2"]), "--device", "cpu", "--prompts", str(prompts), "--out", str(out)]) == 0
    store = ActivationStore.open(out, verify=True)
    assert store.prompts.texts == SEPARATORS and store.prompts.labels == ["0", "1", "2", "3"]


def test_a_txt_prompt_file_splits_at_newlines_only(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(SEPARATORS) + "\r\n", encoding="utf-8")
    assert PromptSet.from_file(path).texts == SEPARATORS


def test_a_csv_field_may_hold_a_line_separator(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('text,label\n"a\u2028b",x\n"two\nlines",y\n', encoding="utf-8")
    assert PromptSet.from_file(path).texts == ["a\u2028b", "two\nlines"]


# ---- item 5: training into a directory that holds a model ---------------------------------------------


def test_training_refuses_to_overwrite_a_model_without_force(tmp_path, capsys):
    out = tmp_path / "organism"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"the weights of a week of training")
    assert main(["organism", "train", "--out", str(out), "--mini", "--steps", "1", "--report-n", "0"]) == 2
    error = capsys.readouterr().err
    assert "is not empty (it holds model.safetensors)" in error and "--force" in error
    assert (out / "model.safetensors").read_bytes() == b"the weights of a week of training"
    assert main(["organism", "train", "--out", str(out), "--mini", "--steps", "1", "--report-n", "0", "--force"]) == 0
    assert (out / "model.safetensors").read_bytes() != b"the weights of a week of training"


# ---- item 6: a torn rollout log; a kill before the store's manifest -------------------------------------


class _Backend:
    """Every rollout is the same non-ASCII sentence (its UTF-8 is several bytes per character)."""

    max_context = None

    def generate(self, context, n, *, temperature, top_p, max_new_tokens, seed):
        return ["Über → größer. the answer is \\boxed{4}"] * n

    def count_tokens(self, text):
        return len(text.split())

    def describe(self):
        return {"backend": "unicode", "model": "none"}


_SEEN: dict[str, int] = {}


def _embed(texts):
    """One fixed direction per distinct text (across calls)."""
    import numpy as np

    out = np.zeros((len(texts), 256))
    for row, text in enumerate(texts):
        out[row, _SEEN.setdefault(text, len(_SEEN) % 256)] = 1.0
    return out


def test_a_rollout_log_cut_inside_a_character_resumes_and_analyzes(tmp_path, monkeypatch):
    import interp.resampling.result as result_module
    from interp.resampling import Chain, RolloutRun, SamplingConfig, run_rollouts

    chain = Chain.from_text("Q: 2 + 2 ? <think>\n", "I add two and two. That makes four.</think> \\boxed{4}")
    config = SamplingConfig(n=2, batch_size=2, forced=False, max_new_tokens=4)
    run = run_rollouts(_Backend(), chain, tmp_path / "run", config=config, gt_answer="4", progress=False)
    log = tmp_path / "run" / "rollouts.jsonl"
    data = log.read_bytes()
    cut = data.rindex("→".encode()) + 1  # inside the arrow's three bytes, on the last line
    log.write_bytes(data[:cut])
    loaded = RolloutRun.load(tmp_path / "run")
    assert len(loaded.records) == len(run.records) - 1  # the torn line is dropped
    monkeypatch.setattr(result_module, "load_embedder", lambda name=None, device="cpu": _embed)
    assert main(["resample", "analyze", str(tmp_path / "run"), "--no-matrix"]) == 0
    resumed = run_rollouts(_Backend(), chain, tmp_path / "run", config=config, gt_answer="4", progress=False)
    assert len(resumed.records) == len(run.records)
    assert log.read_bytes().decode("utf-8").endswith("\n")


def test_a_store_killed_before_its_manifest_resumes_afresh(load_tiny, tmp_path, caplog):
    model = load_tiny("gpt2")
    out = tmp_path / "acts"
    reference = cache_activations(model, PROMPTS, out=tmp_path / "reference", progress=False)
    cache_activations(model, PROMPTS, out=out, progress=False)
    (out / "manifest.json").unlink()  # what a kill -9 after the tokens but before the manifest leaves
    with pytest.raises(InterpError, match="stopped before its manifest was written; pass --resume"):
        cache_activations(model, PROMPTS, out=out, progress=False)
    store = cache_activations(model, PROMPTS, out=out, resume=True, progress=False)
    assert "starting it afresh" in caplog.text  # a warning of the logger interp.store.cache
    store.verify()
    assert store.n_prompts == reference.n_prompts
    for hook in reference.hooks:
        assert (store[hook] == reference[hook]).all(), hook


def test_a_directory_with_other_files_is_still_refused_on_resume(load_tiny, tmp_path):
    out = tmp_path / "acts"
    out.mkdir()
    (out / "prompts.jsonl").write_text("{}\n")
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(InterpError, match="not empty and holds no activation store"):
        cache_activations(load_tiny("gpt2"), PROMPTS, out=out, resume=True, progress=False)
    assert (out / "notes.txt").read_text() == "keep me" and (out / "prompts.jsonl").read_text() == "{}\n"


# ---- item 7: one writer per store -------------------------------------------------------------------


def test_a_second_writer_is_refused_while_the_first_runs(load_tiny, tmp_path):
    out = tmp_path / "acts"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(f"{holder.pid}\n")
        with pytest.raises(InterpError, match=rf"another interp process \(pid {holder.pid}\) is writing the activation store .*lock file .*{LOCK}"):
            cache_activations(load_tiny("gpt2"), PROMPTS, out=out, resume=True, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK).read_text() == f"{holder.pid}\n"  # someone else's lock is left alone


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_the_run_says_so(load_tiny, tmp_path, caplog):
    out = tmp_path / "acts"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])  # a run stopped by SIGTERM leaves its lock like this
    dead.wait()
    (out / LOCK).write_text(f"{dead.pid}\n")
    store = cache_activations(load_tiny("gpt2"), PROMPTS, out=out, resume=True, progress=False)
    assert store.n_prompts == len(PROMPTS) and not (out / LOCK).exists()
    assert f"was left by process {dead.pid}, which no longer runs" in caplog.text and "taking it over" in caplog.text


def test_the_same_process_cannot_write_one_store_twice_at_once(tmp_path):
    from interp.directories import exclusive_lock

    with exclusive_lock(tmp_path / "acts", LOCK, what="activation store"):
        assert json.loads((tmp_path / "acts" / LOCK).read_text()) == os.getpid()
        with pytest.raises(InterpError, match=f"pid {os.getpid()}"):
            with exclusive_lock(tmp_path / "acts", LOCK, what="activation store"):
                pass
    assert not (tmp_path / "acts").exists()  # created for the lock, empty again: removed


# ---- item 8: numbers and files checked where they enter -------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cache", "--model", "m", "--prompts", "p.jsonl", "--out", "o", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["cache", "--model", "m", "--prompts", "p.jsonl", "--out", "o", "--shard-size", "0"], "--shard-size must be an integer >= 1, got 0"),
        (["organism", "train", "--out", "o", "--steps", "-1"], "--steps must be an integer >= 1, got -1"),
        (["probe", "train", "--store", "s", "--out", "o", "--C", "nan"], "--C must be a finite number, got nan"),
        (["probe", "train", "--store", "s", "--out", "o", "--C", "0"], "--C must be a number > 0, got 0.0"),
        (["resample", "--problem", "p.json", "--out", "o", "--top-p", "1.5"], "--top-p must be a number in (0, 1], got 1.5"),
    ],
)
def test_a_bad_number_on_the_command_line_is_named(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('analysis = "cache"\nbatch_size = 2.5\n[prompts]\npath = "p.jsonl"\n', "'batch_size' in the config must be an integer, got 2.5"),
        ('analysis = "cache"\nbatch_size = 0\n[prompts]\npath = "p.jsonl"\n', "'batch_size' in the config must be an integer >= 1, got 0"),
        ('analysis = "probes"\nstore = "s"\nC = nan\n', "'C' in the config must be a finite number, got nan"),
        ('analysis = "resampling"\nprompt = "x"\nn = -3\n', "'n' in the config must be an integer >= 1, got -3"),
    ],
)
def test_a_bad_number_in_a_toml_file_is_named(text, message, tmp_path):
    from interp.experiments import load_config

    (tmp_path / "e.toml").write_text(text)
    with pytest.raises(InterpError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(tmp_path / "e.toml")


def test_a_toml_file_that_is_no_utf8_text_or_a_directory_is_named(tmp_path, capsys):
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    assert main(["run", str(tmp_path / "latin1.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "latin1.toml is not valid TOML (UTF-8 text)" in capsys.readouterr().err
    (tmp_path / "adir.toml").mkdir()
    assert main(["run", str(tmp_path / "adir.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "(it is a directory); pass a TOML file" in capsys.readouterr().err


def test_the_library_refuses_a_zero_shard_size(load_tiny, tmp_path):
    with pytest.raises(InterpError, match="'shard_size' must be an integer >= 1, got 0"):
        cache_activations(load_tiny("gpt2"), PROMPTS, out=tmp_path / "s", shard_size=0, progress=False)
    assert not (tmp_path / "s").exists()
