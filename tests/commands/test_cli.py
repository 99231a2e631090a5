"""The command line outside the library: ``interp --help`` loads neither torch nor plotly, every
subcommand's --help ends with an example, and every flag default is the library's own."""

import argparse
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from interp import defaults
from interp.cli import main
from interp.commands import COMMANDS, build_parser

HEAVY = ("torch", "plotly")  # what `interp --help` must not import
CONSOLE_SCRIPT = Path(sys.executable).with_name("interp")
EXAMPLE = re.compile(r"^examples?:\n  interp ", flags=re.M)


def heavy_imports(stderr: str) -> dict[str, list[str]]:
    """``{heavy module: the chain of modules that imported it}`` from ``-X importtime`` output on stderr."""
    entries = []  # (depth, module) in the order the imports finished: children before their parent
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2 and "imported package" not in line:
            field = line.rsplit("|", 1)[1]
            name = field.strip()
            entries.append(((len(field) - len(field.lstrip()) - 1) // 2, name))
    found = {}
    for i, (depth, name) in enumerate(entries):
        top = name.split(".")[0]
        if top in HEAVY and top not in found:
            chain, level = [name], depth
            for later_depth, later_name in entries[i + 1 :]:
                if later_depth < level:
                    chain.append(later_name)
                    level = later_depth
            found[top] = chain[::-1]
    return found


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-m", "interp", "--help"], [str(CONSOLE_SCRIPT), "--help"]],
    ids=["python -m interp", "interp console script"],
)
def test_help_loads_neither_torch_nor_plotly(command):
    if not Path(command[0]).exists():
        pytest.skip(f"the console script {command[0]} is not installed (pip install -e . creates it)")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}"
    assert done.stdout.startswith("usage: interp"), done.stdout[:500]
    assert "import time:" in done.stderr, "PYTHONPROFILEIMPORTTIME gave no import timings: the check would see nothing"
    found = heavy_imports(done.stderr)
    assert not found, (
        "`interp --help` imported "
        + "; ".join(f"{name} via {' -> '.join(chain)}" for name, chain in found.items())
        + (": command modules import the analyses inside their handlers, not at module level")
    )


def test_heavy_imports_reads_importtime_chains():
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |       torch._C\n"
        "import time:       200 |        300 |     torch\n"
        "import time:        10 |        310 |   interp.lens\n"
        "import time:         5 |        315 | interp.commands.lens\n"
        "import time:         5 |          5 | json\n"
    )
    assert heavy_imports(stderr) == {"torch": ["interp.commands.lens", "interp.lens", "torch", "torch._C"]}


def subcommand_parsers(parser: argparse.ArgumentParser, path: str = "interp"):
    """``(\"interp probe train\", parser)`` for every subcommand and sub-subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from subcommand_parsers(sub, f"{path} {name}")


def test_every_command_is_registered_in_order():
    parser = build_parser()
    top = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    assert list(top.choices) == list(COMMANDS), "build_parser() must register exactly the COMMANDS table, in its order"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_shows_an_example(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: interp {name}"), out[:300]
    assert EXAMPLE.search(out), f"`interp {name} --help` shows no example:\n{out}"


def test_every_sub_subcommand_help_shows_an_example():
    nested = [(path, sub) for path, sub in subcommand_parsers(build_parser()) if path.count(" ") > 1]
    assert {"interp probe train", "interp probe eval", "interp resample analyze"} <= {path for path, _ in nested}
    for path, sub in nested:
        assert EXAMPLE.search(sub.format_help()), f"`{path} --help` shows no example"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def default_of(function, name: str):
    return inspect.signature(function).parameters[name].default


def test_lens_flags_default_to_the_library():
    from interp.lens import LensResult, logit_lens
    from interp.lens.logit import _METRIC_TITLES

    args = parse("lens", "--out", "x")
    assert tuple(args.sites.split(",")) == default_of(logit_lens, "sites") == defaults.LENS_SITES
    assert args.positions == default_of(logit_lens, "positions")
    assert args.top_k == default_of(logit_lens, "top_k")
    assert args.metric == default_of(LensResult.figure, "metric")
    assert set(defaults.LENS_METRICS) == set(_METRIC_TITLES), (
        "--metric offers other metrics than LensResult.figure draws"
    )


def test_probe_flags_default_to_the_library():
    from interp.probes import ProbeResult, train_probes
    from interp.store import cache_activations

    train = parse("probe", "train", "--store", "s", "--out", "o")
    for flag, parameter in (
        ("layers", "layers"),
        ("cv", "cv"),
        ("holdout", "holdout"),
        ("C", "C"),
        ("seed", "seed"),
        ("max_iter", "max_iter"),
    ):
        assert getattr(train, flag) == default_of(train_probes, parameter), flag
    assert train.batch_size == default_of(cache_activations, "batch_size")
    assert train.label_field == default_of(train_probes, "labels")
    evaluate = parse("probe", "eval", "--probe", "p", "--store", "s")
    assert evaluate.label_field == default_of(ProbeResult.evaluate, "labels")


def test_resample_flags_default_to_the_library():
    from dataclasses import fields

    from interp.resampling import SamplingConfig, VLLMBackend, analyze, metrics, result

    config = {field.name: field.default for field in fields(SamplingConfig)}
    for args in (parse("resample"), parse("resample", "analyze", "dir")):
        assert (
            args.similarity_threshold
            == default_of(analyze, "similarity_threshold")
            == metrics.SIMILARITY_THRESHOLD
            == 0.8
        )
        assert args.match_threshold == default_of(analyze, "match_threshold") == metrics.MATCH_THRESHOLD == 0.7
        assert args.embedder == result.DEFAULT_EMBEDDER
    run = parse("resample")
    for flag in ("n", "temperature", "top_p", "max_new_tokens", "seed", "forced_max_new_tokens"):
        assert getattr(run, flag) == config[flag], flag
    assert run.tensor_parallel_size == default_of(VLLMBackend, "tensor_parallel_size")


def test_demo_flags_default_to_the_library():
    from interp.demo import run_demo

    args = parse("demo")
    assert args.model == default_of(run_demo, "model")
    assert args.out == Path(default_of(run_demo, "out"))


def test_ctrl_c_says_how_to_continue_with_flags_that_exist(monkeypatch, capsys):
    import interp.commands.run
    from interp.cli import RESUME_HINTS, main
    from interp.commands import build_parser

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(interp.commands.run, "run", interrupted)
    assert main(["run", "config.toml", "--out", "out"]) == 130
    assert capsys.readouterr().err.strip() == f"interp: interrupted; {RESUME_HINTS['run']}"
    parser = build_parser()
    for command, hint in RESUME_HINTS.items():
        flags = [word.strip(":,.") for word in hint.split() if word.startswith("--")]
        subparser = parser._subparsers._group_actions[0].choices[command]
        known = {option for action in subparser._actions for option in action.option_strings}
        assert set(flags) <= known, (command, flags)
