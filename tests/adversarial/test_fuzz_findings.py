"""One regression test per kind of failure tests/fuzz found: each input was a traceback (or a silent misread)
before; now it is one InterpError that names the file or key and the fix."""

import json
from pathlib import Path

import pytest

from interp.data import PromptSet
from interp.errors import InterpError
from interp.experiments import parse_config
from interp.resampling import Chain, RolloutRun, SamplingConfig, run_rollouts
from interp.resampling.problems import load_problem


# ---- experiment configs ----------------------------------------------------------------------------


def test_an_analysis_that_is_not_a_string_is_refused():
    with pytest.raises(InterpError, match=r"unknown analysis \['lens'\] in the config\..*Known analyses: "):
        parse_config({"analysis": ["lens"]})


@pytest.mark.parametrize("table", [{"analysis": "probes", "store": "st\x00ore"}, {"analysis": "lens", "prompts": {"path": "p\x00.jsonl"}}])
def test_a_path_holding_a_nul_character_is_refused(table, tmp_path):
    with pytest.raises(InterpError, match="holds a NUL character no path can contain"):
        parse_config(table, base=tmp_path)


# ---- prompt files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_lone_surrogate_escape_in_a_prompt_file_is_refused(tmp_path, suffix):
    records = [{"text": "fine"}, {"text": "broken \ud800 text"}]
    path = tmp_path / f"prompts{suffix}"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) if suffix == ".jsonl" else json.dumps(records), encoding="utf-8")
    with pytest.raises(InterpError, match=r"holds a lone surrogate escape \('\\ud800'\), which is not a character"):
        PromptSet.from_file(path)


def test_a_csv_header_with_a_line_break_names_its_fields_on_one_line(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('"prompt\ntext",label\nhello,x\n', encoding="utf-8")
    with pytest.raises(InterpError) as caught:
        PromptSet.from_file(path)
    assert "has no field 'text' (fields: 'prompt\\ntext', label)" in str(caught.value) and "\n" not in str(caught.value)


# ---- problem files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xfb{}", r"is not UTF-8 text \(invalid start byte at byte 0\); save it as UTF-8"),
        (b"[1, 2]", "must hold a JSON object, not a list"),
        (b'{"prompt": 3}', r"'prompt' is int 3, not a string"),
        (b'{"problem": null}', r"'problem' is NoneType None, not a string"),
        (b'{"prompt": "p", "solution": ["a"]}', r"'solution' is list \['a'\], not a string"),
        (b'{"prompt": "p", "gt_answer": {"a": 1}}', r"'gt_answer' is dict .*give a string or a number"),
        (b'{"prompt": "p", "answer_regex": "(unclosed"}', r"'answer_regex' '\(unclosed' does not compile"),
        (b'{"prompt": "\\ud800"}', "holds a lone surrogate escape"),
    ],
    ids=["not-utf8", "a-list", "prompt-int", "problem-null", "solution-list", "gt-answer-table", "bad-regex", "surrogate"],
)
def test_a_malformed_problem_file_is_one_interp_error(tmp_path, content, message):
    path = tmp_path / "problem.json"
    path.write_bytes(content)
    with pytest.raises(InterpError, match=message):
        load_problem(path)


def test_a_thought_anchors_problem_file_gets_the_math_prompt(tmp_path):
    path = tmp_path / "problem.json"
    path.write_text(json.dumps({"problem": "What is 2 + 3?", "gt_answer": 5}))
    problem = load_problem(path)
    assert "Problem: What is 2 + 3? Solution:" in problem["prompt"] and problem["gt_answer"] == "5"


# ---- rollout run directories ------------------------------------------------------------------------


class _EchoBackend:
    max_context = None

    def generate(self, context, n, *, temperature, top_p, max_new_tokens, seed):
        return [" So \\boxed{5}."] * n

    def count_tokens(self, text):
        return len(text.split())

    def describe(self):
        return {"backend": "echo"}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    chain = Chain.from_text("Q: 2 + 3? <think>\n", "Two plus three. That is 5.</think> \\boxed{5}")
    run_rollouts(_EchoBackend(), chain, tmp_path / "run", config=SamplingConfig(n=2, batch_size=2, max_new_tokens=4), gt_answer="5", progress=False)
    return tmp_path / "run"


def _edit_manifest(run_dir: Path, edit) -> None:
    manifest = json.loads((run_dir / "run.json").read_text())
    edit(manifest)
    (run_dir / "run.json").write_text(json.dumps(manifest))


def test_an_intact_run_reads(run_dir):
    assert len(RolloutRun.load(run_dir).records) == 2 * 3 * 2  # two kinds x three prefixes x two rollouts


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("sentences"), r"run.json is damaged: 'sentences' is NoneType None"),
        (lambda m: m.update(config=None), r"run.json is damaged: 'config' is NoneType None"),
        (lambda m: m["contexts"].pop(), r"one context per prefix \(2 sentences, 2 contexts\)"),
        (lambda m: m["config"].update(top_p="high"), r"the sampling setting 'top_p' is str 'high'"),
        (lambda m: m["config"].update(colour=1), r"unknown sampling setting 'colour' in 'config'"),
        (lambda m: m["config"].update(n=0), r"bad sampling setting n=0"),
    ],
    ids=["no-sentences", "config-null", "contexts-short", "top-p-string", "unknown-setting", "n-zero"],
)
def test_a_damaged_run_manifest_is_one_interp_error(run_dir, edit, message):
    _edit_manifest(run_dir, edit)
    with pytest.raises(InterpError, match=message):
        RolloutRun.load(run_dir)


@pytest.mark.parametrize("content", [b"\xfb", b"{not json"], ids=["not-utf8", "not-json"])
def test_an_unreadable_run_manifest_is_one_interp_error(run_dir, content):
    (run_dir / "run.json").write_bytes(content)
    with pytest.raises(InterpError, match=r"run.json is not (UTF-8 text|valid JSON)"):
        RolloutRun.load(run_dir)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("kind"), r"record 1: 'kind' is NoneType None"),
        (lambda r: r.update(continuation=None), r"record 1: 'continuation' is NoneType None"),
        (lambda r: r.update(prefix=True), r"record 1: 'prefix' is bool True"),
        (lambda r: r.update(prefix=7), r"record 1: prefix 7 / rollout 0 is outside the chain's prefixes 0..2"),
        (lambda r: r.update(kind="other"), r"record 1: unknown kind 'other'"),
    ],
    ids=["no-kind", "continuation-null", "prefix-bool", "prefix-out-of-range", "unknown-kind"],
)
def test_a_damaged_rollout_record_names_its_line(run_dir, edit, message):
    lines = (run_dir / "rollouts.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    edit(first)
    (run_dir / "rollouts.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    with pytest.raises(InterpError, match=message + ".*delete that line and run again"):
        RolloutRun.load(run_dir)


# ---- activation stores -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine_store(tmp_path_factory, load_tiny) -> Path:
    from interp.store import cache_activations

    out = tmp_path_factory.mktemp("findings") / "store"
    cache_activations(load_tiny("gpt2"), PromptSet.from_texts(["one prompt", "another prompt"]), hooks=["resid_post"], out=out, batch_size=2, progress=False)
    return out


@pytest.fixture
def store_dir(pristine_store, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(pristine_store, tmp_path / "store"))


@pytest.mark.parametrize("files", [{"prompts.jsonl": None}, ["prompts.jsonl"], {"prompts.jsonl": {"size": "12"}}], ids=["entry-null", "a-list", "size-string"])
def test_a_manifest_whose_file_records_are_not_tables_is_refused(store_dir, files):
    from interp.store import ActivationStore

    manifest = json.loads((store_dir / "manifest.json").read_text())
    manifest["files"] = files
    (store_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InterpError, match="'files' must map each file of the store to its size and hash"):
        ActivationStore.open(store_dir, verify=True)


def test_a_lone_surrogate_in_the_stores_prompts_is_refused(store_dir):
    from interp.store import ActivationStore
    from interp.store.manifest import file_record

    lines = (store_dir / "prompts.jsonl").read_text().splitlines()
    lines[0] = json.dumps({"text": "one \ud800 prompt"})
    (store_dir / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    manifest = json.loads((store_dir / "manifest.json").read_text())
    manifest["files"]["prompts.jsonl"] = file_record(store_dir / "prompts.jsonl")  # as if written so: past the size check
    (store_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InterpError, match=r"prompts.jsonl holds a lone surrogate escape \('\\ud800'\)"):
        ActivationStore.open(store_dir)


def test_a_jsonl_line_nested_too_deeply_is_a_clear_error():
    from interp.io import read_jsonl

    with pytest.raises(InterpError, match="line 1: JSON nested too deeply"):
        read_jsonl(b"[" * 100_000 + b"\n")
