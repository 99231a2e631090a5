"""The file system saying no: an --out that is a file, a read-only directory, a full disk.

Each is one line (``interp: error: ...``, exit 2) naming the path and the fix, never a traceback,
and the output checks happen before any work. Every test fails if its traceback comes back.
"""

import errno
import json
import os
from pathlib import Path

import pytest

from interp.cli import main
from interp.errors import InterpError

from conftest import PROMPTS

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")

# every subcommand that writes somewhere: its argv before "--out PATH" (inputs need not exist: --out is checked first)
DIRECTORY_OUTPUTS = {
    "cache": ["cache", "--prompts", "p.jsonl"],
    "lens": ["lens", "--prompts", "p.jsonl"],
    "lens train": ["lens", "train"],
    "dla": ["dla", "--prompts", "p.jsonl"],
    "patch": ["patch", "--clean", "c.txt", "--corrupt", "d.txt"],
    "prune": ["prune", "--harmful", "h.jsonl", "--benign", "b.jsonl"],
    "probe train": ["probe", "train", "--store", "acts"],
    "probe eval": ["probe", "eval", "--probe", "probes", "--store", "acts"],
    "direction find": ["direction", "find", "--harmful", "h.csv", "--benign", "b.jsonl"],
    "direction orthogonalize": ["direction", "orthogonalize", "--direction", "d"],
    "resample": ["resample", "--problem", "problem.json"],
    "organism train": ["organism", "train", "--mini"],
    "dictionary train": ["dictionary", "train", "--store", "acts", "--site", "blocks.0.hook_resid_post"],
    "dictionary eval": ["dictionary", "eval", "--dictionary", "sae", "--prompts", "p.jsonl"],
    "graph": ["graph", "--prompt", "the cat", "--transcoders", "tc"],
    "run": ["run", "experiment.toml"],
    "demo": ["demo"],
}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line and "prompt/s]" not in line]  # progress bars
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("interp: error: "), err
    return lines[0]


def _subcommands_with(flag: str) -> set[str]:
    """Every (sub-)subcommand of the real parser that has ``flag``, as "name" or "name sub"."""
    import argparse

    from interp.commands import build_parser

    found = set()

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip())
            elif flag in action.option_strings and prefix:
                found.add(prefix)

    walk(build_parser(), "")
    return found


def test_every_command_with_out_is_covered():
    assert _subcommands_with("--out") == set(DIRECTORY_OUTPUTS) | {"organism report"}
    assert _subcommands_with("--result-dir") == {"resample analyze"}


# ---- --out names an existing file ------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(DIRECTORY_OUTPUTS))
def test_an_out_that_is_a_file_is_refused_before_any_work(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "results.txt"
    target.write_text("a file the user wants to keep")
    assert main([*DIRECTORY_OUTPUTS[command], "--out", str(target)]) == 2
    error = _one_line_error(capsys)
    assert f"--out {target} is a file, not a directory" in error and "choose a directory path" in error
    assert target.read_text() == "a file the user wants to keep"


def test_a_result_dir_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "analysis"
    target.write_text("x")
    assert main(["resample", "analyze", str(tmp_path / "run"), "--result-dir", str(target)]) == 2
    assert f"--result-dir {target} is a file, not a directory" in _one_line_error(capsys)


def test_an_out_below_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "blocker").write_text("x")
    out = tmp_path / "blocker" / "deeper" / "acts"
    assert main(["cache", "--prompts", "p.jsonl", "--out", str(out)]) == 2
    error = _one_line_error(capsys)
    assert f"{tmp_path / 'blocker'} is a file, not a directory" in error and str(out) in error


def test_organism_report_out_directory_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    """`interp organism report --out DIR` once evaluated for minutes, then crashed with IsADirectoryError."""
    import interp.organisms.evaluate as evaluate

    monkeypatch.setattr(evaluate, "organism_report", lambda *a, **k: pytest.fail("the evaluation ran before --out was checked"))
    assert main(["organism", "report", "--n", "2", "--out", str(tmp_path)]) == 2
    error = _one_line_error(capsys)
    assert f"--out {tmp_path} is a directory" in error and str(tmp_path / "report.json") in error


def test_organism_report_writes_its_out_file(tmp_path, capsys, monkeypatch):
    import interp.organisms.evaluate as evaluate

    monkeypatch.setattr(evaluate, "organism_report", lambda *a, **k: {"passed": True, "n": k.get("n")})
    out = tmp_path / "new" / "report.json"
    assert main(["organism", "report", "--n", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"passed": True, "n": 2}


# ---- a read-only output directory ----------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path):
    directory = tmp_path / "read_only"
    directory.mkdir()
    directory.chmod(0o500)
    yield directory
    directory.chmod(0o700)


def test_a_read_only_out_is_refused_before_any_work(read_only, capsys):
    if os.access(read_only, os.W_OK):
        pytest.skip("chmod does not stop this user (root) from writing")
    assert main(["cache", "--prompts", "p.jsonl", "--out", str(read_only / "acts")]) == 2
    error = _one_line_error(capsys)
    assert f"no permission to write in {read_only}" in error and "chmod u+w" in error


def test_a_read_only_out_is_refused_even_as_root(read_only, capsys, monkeypatch):
    """The same refusal with os.access answering as it does for a normal user (root passes every chmod)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **k: False if Path(path) == read_only else real_access(path, mode, **k))
    for out in (read_only, read_only / "new" / "deeper"):
        assert main(["dla", "--prompts", "p.jsonl", "--out", str(out)]) == 2
        assert f"no permission to write in {read_only}" in _one_line_error(capsys)


def test_a_write_without_permission_names_the_path(tmp_path, monkeypatch):
    """A PermissionError inside the atomic write (a directory that turned read-only mid-run) is an InterpError."""
    import tempfile

    from interp.io import atomic_write_json

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.json.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(InterpError, match=rf"cannot write {tmp_path / 'x.json'}: Permission denied; no permission: .*chmod u\+w"):
        atomic_write_json(tmp_path / "x.json", {"a": 1})


# ---- a full disk -----------------------------------------------------------------------------------


def _full_disk(monkeypatch, only: str = "") -> None:
    """fsync (the last step before the rename) fails with ENOSPC, for every file or only those named ``only``."""
    real_fsync, real_fdopen = os.fsync, os.fdopen
    names: dict[int, str] = {}

    def fdopen(fd, *args, **kwargs):
        names[fd] = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        return real_fdopen(fd, *args, **kwargs)

    def fsync(fd):
        if only in names.get(fd, ""):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    from interp.io import atomic_write_json

    path = tmp_path / "result.json"
    path.write_text('{"old": true}')
    _full_disk(monkeypatch)
    with pytest.raises(InterpError, match=rf"cannot write {path}: No space left on device; the disk is full: free some space"):
        atomic_write_json(path, {"new": True})
    assert path.read_text() == '{"old": true}' and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in PROMPTS[:3]))
    return path


def test_a_full_disk_during_cache_is_one_line(tiny_model_dirs, prompts_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "acts"
    _full_disk(monkeypatch, only="overview.html")  # the store is written; its overview figure is not
    assert main(["cache", "--model", str(tiny_model_dirs["gpt2"]), "--device", "cpu", "--prompts", str(prompts_file), "--out", str(out)]) == 2
    error = _one_line_error(capsys)
    assert f"cannot write {out / 'overview.html'}: No space left on device" in error and "free some space" in error
    assert not (out / "overview.html").exists() and not list(out.glob(".overview.html.*"))


def test_a_disk_error_without_a_file_name_names_the_out(tmp_path, capsys, monkeypatch):
    """An OSError(ENOSPC) from outside interp's own writes (a library's) still names where it was writing."""
    import interp.organisms.evaluate as evaluate

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluate, "organism_report", full)
    out = tmp_path / "report.json"
    assert main(["organism", "report", "--out", str(out)]) == 2
    assert f"cannot write --out {out}: No space left on device; the disk is full" in _one_line_error(capsys)


def test_a_missing_input_file_is_one_line(tmp_path, capsys, monkeypatch):
    """An OSError naming a file, raised anywhere in a command, is one line naming that file."""
    import interp.organisms.evaluate as evaluate

    def missing(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "gone.safetensors"))

    monkeypatch.setattr(evaluate, "organism_report", missing)
    assert main(["organism", "report"]) == 2
    assert f"cannot use {tmp_path / 'gone.safetensors'}: No such file or directory" in _one_line_error(capsys)


# ---- HTML written atomically -------------------------------------------------------------------------


def test_the_overview_and_report_html_are_renamed_into_place(tiny_model_dirs, prompts_file, tmp_path, monkeypatch):
    """overview.html (cache) and a report (index.html's writer) appear only by os.replace of a complete temp file."""
    from interp.report import Section, write_report

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (replaced.append(Path(dst).name), real_replace(src, dst))[1])
    out = tmp_path / "acts"
    assert main(["cache", "--model", str(tiny_model_dirs["gpt2"]), "--device", "cpu", "--prompts", str(prompts_file), "--out", str(out)]) == 0
    write_report(tmp_path / "index.html", "t", [Section("s", "e")])
    assert "overview.html" in replaced and "index.html" in replaced
    assert (tmp_path / "index.html").read_text().rstrip().endswith("</html>")
