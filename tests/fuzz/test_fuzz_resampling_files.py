"""Fuzz the readers of chain-of-thought resampling files: problem files (``interp resample --problem``) and
run directories (``run.json`` + ``rollouts.jsonl``). Damaged or random files must read or be refused with
InterpError; nothing else may escape."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from interp.resampling import Chain, RolloutRun, SamplingConfig, run_rollouts
from interp.resampling.problems import load_problem, problem_from_record

from fuzzing import FUZZ, any_text, damaged_bytes, damaged_json, json_values, only_interp_errors

PROBLEM = {"prompt": "Q: what is 2 + 3 ? <think>\n", "solution": "Two plus three. That is 5.</think> \\boxed{5}",
           "gt_answer": "5", "answer_regex": "answer is (\\d+)"}  # fmt: skip
THOUGHT_ANCHORS_PROBLEM = {"problem": "What is 2 + 3?", "gt_answer": 5}


class EchoBackend:
    """Answers every context with the same continuation (the run's files are what is fuzzed)."""

    max_context = None

    def generate(self, context, n, *, temperature, top_p, max_new_tokens, seed):
        return [f" So the answer is \\boxed{{{5 + i % 2}}}." for i in range(n)]

    def count_tokens(self, text):
        return len(text.split())

    def describe(self):
        return {"backend": "echo"}


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz-rollouts") / "run"
    chain = Chain.from_text(PROBLEM["prompt"], PROBLEM["solution"])
    run_rollouts(EchoBackend(), chain, out, config=SamplingConfig(n=2, batch_size=2, max_new_tokens=8), gt_answer="5", progress=False)
    return out


def read_problem(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "problem.json"
        path.write_bytes(data)

        def load() -> bool:
            problem = load_problem(path)
            assert isinstance(problem["prompt"], str) and (problem["gt_answer"] is None or isinstance(problem["gt_answer"], str))
            json.dumps(problem, ensure_ascii=False).encode("utf-8")  # what the run records of it (its hash)
            return True

        event("read" if only_interp_errors(load) else "refused")


def read_run(directory: Path) -> bool:
    """Everything the analysis reads of a run: the chain, the settings, the records by prefix, their texts."""
    run = RolloutRun.load(directory)
    assert run.chain.n_sentences == len(run.manifest["sentences"])
    kinds = ("resample", "forced") if run.config.forced else ("resample",)
    for kind in kinds:
        assert len(run.by_prefix(kind)) == run.chain.n_sentences + 1
    for record in run.records:
        assert isinstance(run.full_text(record), str)
    run.is_complete()
    return True


def check_damaged_run(pristine: Path, name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / "run"
        shutil.copytree(pristine, copy)
        (copy / name).write_bytes(data)
        event("read" if only_interp_errors(lambda: read_run(copy)) else "refused")


def test_the_pristine_files_read(pristine_run, tmp_path):
    assert read_run(pristine_run)
    for problem in (PROBLEM, THOUGHT_ANCHORS_PROBLEM):
        (tmp_path / "problem.json").write_text(json.dumps(problem))
        assert load_problem(tmp_path / "problem.json")["gt_answer"] == "5"


@FUZZ
@given(data=st.data(), original=st.sampled_from([PROBLEM, THOUGHT_ANCHORS_PROBLEM]))
def test_a_damaged_problem_file_is_read_or_refused(data, original):
    if data.draw(st.booleans()):
        read_problem(json.dumps(data.draw(damaged_json(original))).encode())
    else:
        read_problem(data.draw(damaged_bytes(json.dumps(original).encode())))


@FUZZ
@given(value=json_values | st.fixed_dictionaries({}, optional={"prompt": any_text | json_values, "problem": any_text | json_values,
       "solution": json_values, "gt_answer": json_values, "answer_regex": any_text | json_values}))  # fmt: skip
def test_a_problem_file_of_random_json_is_read_or_refused(value):
    read_problem(json.dumps(value).encode())
    only_interp_errors(lambda: problem_from_record(value, "problem 1 of problems.jsonl"))  # a line of --problems FILE.jsonl


@pytest.mark.parametrize("name", ["run.json", "rollouts.jsonl"])
@FUZZ
@given(data=st.data())
def test_a_damaged_run_file_is_read_or_refused(pristine_run, name, data):
    check_damaged_run(pristine_run, name, data.draw(damaged_bytes((pristine_run / name).read_bytes())))


@FUZZ
@given(data=st.data())
def test_a_run_manifest_with_damaged_values_is_read_or_refused(pristine_run, data):
    manifest = json.loads((pristine_run / "run.json").read_text())
    check_damaged_run(pristine_run, "run.json", json.dumps(data.draw(damaged_json(manifest))).encode())


@FUZZ
@given(data=st.data())
def test_rollout_records_with_damaged_values_are_read_or_refused(pristine_run, data):
    records = [json.loads(line) for line in (pristine_run / "rollouts.jsonl").read_text().splitlines()]
    damaged = data.draw(damaged_json(records))
    lines = damaged if isinstance(damaged, list) else [damaged]
    check_damaged_run(pristine_run, "rollouts.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode())
