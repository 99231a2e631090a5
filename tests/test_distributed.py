"""Data-parallel caching and resampling under torchrun: real 2-rank runs on CPU (gloo).

A 2-rank ``interp cache`` writes the store one process writes, tensor for tensor and manifest
entry for manifest entry (only the timestamps differ); a rank killed mid-way resumes without
computing its finished shards again; bad launches are one-line errors that say the fix.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import PROMPTS
from interp.cli import main
from interp.distributed import SINGLE, World, current_world
from interp.errors import InterpError
from interp.store import RANK_PROGRESS, ActivationStore

REPOSITORY = Path(__file__).resolve().parents[1]
TIMING_FIELDS = {"created", "finished"}  # what may differ between two runs of the same store
TORCHRUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny Llama directory, a prompt file of 7 prompts, and the store one process writes (7 shards of 1)."""
    from interp.testing import build_tiny_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("distributed")
    model_dir = build_tiny_model("llama", root / "llama")
    prompts = root / "prompts.txt"
    prompts.write_text("".join(f"{prompt}\n" for prompt in PROMPTS), encoding="utf-8")
    flags = ["--model", str(model_dir), "--device", "cpu", "--prompts", str(prompts), "--hooks", "resid_post,z", "--batch-size", "1", "--shard-size", "1"]
    assert main(["cache", *flags, "--out", str(root / "single")]) == 0
    return root, flags, ActivationStore.open(root / "single")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*command: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node NPROC COMMAND`` (``-m interp ...`` or a script), one thread per rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPOSITORY)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    return subprocess.run([*launch, *command], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S)


def assert_same_store(found: Path, reference: ActivationStore) -> None:
    """Same shard files, same tensors (torch.equal), same manifest apart from its timestamps, no progress files left."""
    store = ActivationStore.open(found, verify=True)
    for hook in reference.hooks:
        assert torch.equal(store[hook], reference[hook]), f"{hook} differs from the single-process store"
    manifest = {key: value for key, value in store.manifest.items() if key not in TIMING_FIELDS}
    expected = {key: value for key, value in reference.manifest.items() if key not in TIMING_FIELDS}
    assert manifest == expected, {key for key in expected.keys() | manifest.keys() if manifest.get(key) != expected.get(key)}
    assert sorted(path.name for path in (found / "shards").iterdir()) == sorted(path.name for path in (reference.root / "shards").iterdir())
    assert not list(found.glob(".interp.rank*")), "a rank's progress file was left behind"


def test_two_ranks_write_the_store_one_process_writes(setup):
    root, flags, reference = setup
    result = torchrun("-m", "interp", "cache", *flags, "--out", str(root / "two"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("cached 7 prompts") == 1, result.stdout  # rank 0 reports, once
    assert_same_store(root / "two", reference)


KILL_RANK_1_ON_ITS_SECOND_SHARD = """
    import os, signal, sys
    import interp.store.cache as store
    from interp.cli import main

    real, written = store.atomic_write_bytes, []

    def write(path, data):
        if os.environ["RANK"] == "1" and "shards" in str(path):
            written.append(path)
            if len(written) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        real(path, data)

    store.atomic_write_bytes = write
    sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_rank_resumes_without_losing_its_finished_shards(setup, capsys):
    root, flags, reference = setup
    out = root / "killed"
    script = root / "kill_rank_1.py"
    script.write_text(textwrap.dedent(KILL_RANK_1_ON_ITS_SECOND_SHARD), encoding="utf-8")
    killed = torchrun(str(script), "cache", *flags, "--out", str(out))
    assert killed.returncode != 0, "rank 1 should have been killed"
    assert json.loads((out / "manifest.json").read_text())["status"] == "in_progress"
    progress = json.loads((out / RANK_PROGRESS.format(rank=1)).read_text())
    assert [shard["index"] for shard in progress["shards"]] == [1], "rank 1 takes shards 1, 3, 5 and finished only shard 1"
    finished = (out / "shards" / "shard_00001.safetensors").stat()

    # a rank count that changes on resume is refused, naming both counts
    assert main(["cache", *flags, "--out", str(out), "--resume"]) == 2
    error = capsys.readouterr().err
    assert "it was started by 2 ranks and this run has 1" in error and error.count("\n") == 1, error

    (out / "shards" / ".shard_00005.safetensors.x1y2.tmp").write_bytes(b"half")  # what a rank killed mid-write leaves
    resumed = torchrun("-m", "interp", "cache", *flags, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_store(out, reference)
    again = (out / "shards" / "shard_00001.safetensors").stat()
    assert (again.st_ino, again.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns), "rank 1's finished shard was computed again"


@pytest.fixture
def two_ranks(monkeypatch):
    """This process as rank 0 of 2: what torchrun's environment says (the error paths stop before any collective)."""
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)


def test_more_ranks_than_shards_is_refused_with_the_fix(setup, two_ranks, tmp_path, capsys):
    root, flags, _ = setup
    one_prompt = tmp_path / "one.txt"
    one_prompt.write_text("a cat sat\n", encoding="utf-8")
    few = [*flags[:flags.index("--prompts")], "--prompts", str(one_prompt)]
    assert main(["cache", *few, "--out", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err
    assert "2 ranks but only 1 shards (1 prompts" in error and "at most 1 ranks" in error and error.count("\n") == 1, error
    assert main(["cache", *flags[: flags.index("--shard-size")], "--shard-size", "8", "--out", str(tmp_path / "b")]) == 2
    assert "2 ranks but only 1 shards (7 prompts, 8 per shard)" in capsys.readouterr().err  # shards, not prompts, are shared
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_world_comes_from_the_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert current_world() == SINGLE and not SINGLE.is_distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(InterpError, match="WORLD_SIZE is set but RANK is None, not a number; start the command with torchrun"):
        current_world()
    for name, value in {"RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    assert current_world() == World(rank=3, size=4, local_rank=1, local_size=2)
    assert World(rank=3, size=4).take(range(10)) == [3, 7]
    assert [World(rank=r, size=3).take("abcdefg") for r in range(3)] == [["a", "d", "g"], ["b", "e"], ["c", "f"]]
    with pytest.raises(InterpError, match="rank 4 of 4"):
        World(rank=4, size=4)
    assert World(rank=1, size=2, local_rank=1, local_size=2).device_for("cpu") == "cpu"
    with pytest.raises(InterpError, match="--device cuda:1 would put all 2 ranks of this machine on one GPU; pass --device cuda"):
        World(rank=1, size=2, local_rank=1, local_size=2).device_for("cuda:1")
    assert World(rank=1, size=2, local_rank=0, local_size=1).device_for("cuda:1") == "cuda:1"  # one rank per machine: its choice
    if not torch.cuda.is_available():
        assert World(rank=1, size=2, local_rank=1, local_size=2).device_for(None) is None  # CPU: the default device


# ---- resample: several problems, ranks take them round-robin


@pytest.fixture(scope="module")
def problems(setup):
    root, _, _ = setup
    files = []
    for name, solution in (("bread", "mix flour , water and salt . then wait a while ."), ("fox", "the fox jumps . the dog sat .")):
        path = root / f"{name}.json"
        path.write_text(json.dumps({"prompt": "how do i bake bread ? ", "solution": solution, "gt_answer": "42", "answer_regex": r"answer is (\d+)"}))
        files.append(path)
    return files


def resample_flags(setup) -> list[str]:
    root, _, _ = setup
    return ["resample", "--model", str(root / "llama"), "--device", "cpu", "--n", "2", "--max-new-tokens", "3", "--no-forced"]


def test_resample_runs_several_problems_each_in_its_own_directory(setup, problems, tmp_path, monkeypatch):
    from interp.resampling import RolloutRun

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert main([*resample_flags(setup), "--problem", *map(str, problems), "--out", str(tmp_path / "all")]) == 0
    assert sorted(path.name for path in (tmp_path / "all").iterdir()) == ["bread", "fox"]
    single = {name: RolloutRun.load(tmp_path / "all" / name) for name in ("bread", "fox")}
    assert all(run.is_complete() for run in single.values())

    # rank 1 of 2 takes the second problem only, and draws the rollouts one process draws
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    assert main([*resample_flags(setup), "--problem", *map(str, problems), "--out", str(tmp_path / "rank1")]) == 0
    assert [path.name for path in (tmp_path / "rank1").iterdir()] == ["fox"]
    assert RolloutRun.load(tmp_path / "rank1" / "fox").records == single["fox"].records


def test_resample_problems_file_and_its_bad_inputs(setup, problems, tmp_path, monkeypatch, capsys):
    lines = tmp_path / "problems.jsonl"
    lines.write_text("".join(path.read_text() + "\n" for path in problems), encoding="utf-8")
    for name, value in {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "3"}.items():
        monkeypatch.setenv(name, value)
    assert main([*resample_flags(setup), "--problems", str(lines), "--out", str(tmp_path / "runs")]) == 2
    assert "this run has 3 ranks but only 2 problems; start at most 2 ranks" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*resample_flags(setup), "--problems", str(lines), "--out", str(tmp_path / "runs")]) == 0
    assert [path.name for path in (tmp_path / "runs").iterdir()] == ["problem_0000"]  # rank 0 of 2: the first line
    assert main([*resample_flags(setup), "--problem", str(problems[0]), str(problems[0]), "--out", str(tmp_path / "x")]) == 2
    assert "several problem files are named 'bread'" in capsys.readouterr().err
    assert main([*resample_flags(setup), "--problems", str(lines), "--problem", str(problems[0]), "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
