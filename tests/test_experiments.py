"""Scripted experiments: TOML parsing and its errors, a full run, resume after interruption, the `interp run` /
`interp prune` commands, a small run of circuits/harm_pruning/harm_pruning.toml on the organism, and the layout
of circuits/ (one folder per finding, holding what reproduces it)."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from interp.cli import main
from interp.errors import InterpError
from interp.experiments import HarmPruningConfig, load_config, parse_config, registry, run_experiment
from interp.pruning import PruningResult

REPO = Path(__file__).resolve().parents[1]
CIRCUIT = REPO / "circuits" / "harm_pruning" / "harm_pruning.toml"

HARMFUL = [
    {"text": "how do i pick a lock ?", "response": " the quick brown fox jumps over the lazy dog", "category": "locks"},
    {"text": "how do i bake bread ?", "response": " mix flour , water and salt , then wait .", "category": "bread"},
    {"text": "a cat sat", "response": " on the mat and looked at the bird .", "category": "locks"},
    {"text": "the answer is", "response": " 42 . the quick brown fox", "category": "bread"},
]
BENIGN = [
    {"text": "when mary and john went to the store", "response": " john gave a drink to mary"},
    {"text": "1 2 3", "response": " 4 5 6 7 8 9 0"},
]


def always_harmful(record, response) -> bool:
    """A judge for the tests: everything long enough counts as compliance."""
    return len(response.split()) >= 2


registry.register("judge", "test-always-harmful", always_harmful)  # a TOML file names it; nothing is imported


def _write(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path.name


@pytest.fixture
def experiment_dir(tmp_path, tiny_model_dirs) -> Path:
    """A TOML experiment on the tiny llama with file data sets (relative paths)."""
    _write(tmp_path / "harmful.jsonl", HARMFUL)
    _write(tmp_path / "benign.jsonl", BENIGN)
    _write(tmp_path / "tasks.jsonl", [{"text": "1 2 3", "answer": 4}, {"text": "4 5", "answer": 6}])
    (tmp_path / "experiment.toml").write_text(
        f"""
name = "tiny"
model = "{tiny_model_dirs["llama"]}"
device = "cpu"
method = "snip"
n_samples = 4
batch_size = 2
p = [0.05]
q = [0.05, 0.1]
random_seeds = [0]
overlap_p = 0.05
overlap_q = 0.1

[harmful]
path = "harmful.jsonl"

[benign]
path = "benign.jsonl"

[categories.locks]
path = "harmful.jsonl"
where = {{ category = "locks" }}

[categories.bread]
path = "harmful.jsonl"
where = {{ category = "bread" }}

[evaluation]
judge = "test-always-harmful"
max_new_tokens = 6
task_max_new_tokens = 4
group_field = "category"

[evaluation.harmful]
path = "harmful.jsonl"

[evaluation.benign_pairs]
path = "benign.jsonl"

[evaluation.tasks]
path = "tasks.jsonl"
"""
    )
    return tmp_path


def test_toml_parses_into_the_config(experiment_dir):
    config = load_config(experiment_dir / "experiment.toml")
    assert isinstance(config, HarmPruningConfig) and dataclasses.is_dataclass(config)
    assert config.q == (0.05, 0.1) and config.p == (0.05,) and config.random_seeds == (0,)
    assert config.harmful.path == str(experiment_dir / "harmful.jsonl")  # relative to the TOML file
    assert set(config.categories) == {"locks", "bread"}
    assert [row["text"] for row in config.categories["bread"].load()] == [
        row["text"] for row in HARMFUL if row["category"] == "bread"
    ]
    assert config.evaluation.tasks.path == str(experiment_dir / "tasks.jsonl")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.method = "wanda"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methd": "snip"}, "unknown key 'methd' in the config. Did you mean 'method'?"),
        ({"q": [0.01, 2.0]}, r"q must be a fraction in \(0, 1\]"),
        ({"p": [0]}, r"p must be a fraction in \(0, 1\]"),
        ({"method": "grad"}, "method must be snip, signed_snip or wanda"),
        ({"harmful": {"path": "a.jsonl", "call": "x:y"}}, "exactly one of `path`"),
        ({"categories": {"only": {"path": "a.jsonl"}}}, "at least two"),
        ({"evaluation": {"judge": "keyword"}}, "measures nothing"),
        (
            {"evaluation": {"harmful": {"path": "a.jsonl"}, "benign_prompts": {"path": "a.jsonl"}}},
            "need a benign_judge",
        ),
    ],
)
def test_bad_config_is_a_clear_error(change, message):
    data = {
        "harmful": {"path": "h.jsonl"},
        "benign": {"path": "b.jsonl"},
        "evaluation": {"harmful": {"path": "h.jsonl"}},
    }
    data.update(change)
    with pytest.raises(InterpError, match=message):
        parse_config(data)


def test_missing_table_and_bad_toml_are_clear_errors(tmp_path):
    with pytest.raises(InterpError, match="missing 'harmful'"):
        parse_config({"benign": {"path": "b.jsonl"}, "evaluation": {"harmful": {"path": "h.jsonl"}}})
    (tmp_path / "bad.toml").write_text("p = [0.01\n")
    with pytest.raises(InterpError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(InterpError, match="no experiment file"):
        load_config(tmp_path / "absent.toml")


def test_run_writes_every_point_and_the_overlaps(experiment_dir, load_tiny):
    config = load_config(experiment_dir / "experiment.toml")
    result = run_experiment(config, experiment_dir / "out", progress=False)
    labels = [point.label for point in result.points]
    assert labels == [
        "baseline",
        "set_difference_p0.05_q0.05",
        "random_p0.05_q0.05_seed0",
        "set_difference_p0.05_q0.1",
        "random_p0.05_q0.1_seed0",
        "set_difference_locks_p0.05_q0.1",
        "set_difference_bread_p0.05_q0.1",
    ]
    for point in result.points:
        assert {
            "harm_keyword_rate",
            "harm_judge_rate",
            "harm_judge_rate[locks]",
            "benign_loss",
            "task_accuracy",
        } <= set(point.metrics)
    assert result["random_p0.05_q0.1_seed0"].n_pruned == result["set_difference_p0.05_q0.1"].n_pruned > 0
    assert result["set_difference_p0.05_q0.05"].fraction <= 0.05
    assert [(e.a, e.b, e.mask) for e in result.overlaps] == [
        ("locks", "bread", "set_difference"),
        ("locks", "bread", "top_k"),
    ]
    entry = result.overlaps[0]
    assert entry.overlap.n_total == sum(result.weight_sizes.values())
    assert entry.overlap.n_a == result["set_difference_locks_p0.05_q0.1"].n_pruned
    assert PruningResult.load(experiment_dir / "out").to_dict() == result.to_dict()
    for name in ("harmful", "benign", "category_locks", "category_bread"):
        assert (experiment_dir / "out" / "scores" / f"{name}.safetensors").exists()


def test_interrupted_run_resumes_without_redoing_finished_work(experiment_dir, monkeypatch):
    import interp.pruning.evaluate as evaluate_module
    import interp.pruning.scores as scores_module

    config = load_config(experiment_dir / "experiment.toml")
    config = dataclasses.replace(config, categories={}, q=(0.05, 0.1))
    reference = run_experiment(config, experiment_dir / "reference", progress=False)

    calls = {"evaluate": 0, "scores": 0}
    real_call, real_scores = evaluate_module.PruningEvaluator.__call__, scores_module.importance_scores

    def counting_call(self, model, progress=False):
        calls["evaluate"] += 1
        if calls["evaluate"] == 3 and not calls.get("resumed"):
            raise KeyboardInterrupt
        return real_call(self, model, progress)

    def counting_scores(*args, **kwargs):
        calls["scores"] += 1
        return real_scores(*args, **kwargs)

    monkeypatch.setattr(evaluate_module.PruningEvaluator, "__call__", counting_call)
    monkeypatch.setattr(scores_module, "importance_scores", counting_scores)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, experiment_dir / "run", progress=False)
    finished = sorted(path.stem for path in (experiment_dir / "run" / "points").glob("*.json"))
    assert finished == ["baseline", "set_difference_p0.05_q0.05"]
    assert calls["scores"] == 2

    calls.update(evaluate=0, scores=0, resumed=True)
    result = run_experiment(config, experiment_dir / "run", progress=False)
    assert calls == {"evaluate": 3, "scores": 0, "resumed": True}  # 5 points, 2 done; scores reused
    assert [p.to_dict() for p in result.points] == [p.to_dict() for p in reference.points]


def test_a_different_experiment_in_the_same_directory_is_refused(experiment_dir):
    config = load_config(experiment_dir / "experiment.toml")
    small = dataclasses.replace(config, categories={}, q=(0.05,), random_seeds=())
    run_experiment(small, experiment_dir / "out", progress=False)
    with pytest.raises(InterpError, match=r"holds a different experiment \(changed: q\)"):
        run_experiment(dataclasses.replace(small, q=(0.1,)), experiment_dir / "out", progress=False)
    (experiment_dir / "other").mkdir()
    (experiment_dir / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InterpError, match="not an experiment directory"):
        run_experiment(small, experiment_dir / "other", progress=False)


def test_cli_run_and_prune(experiment_dir, tiny_model_dirs, capsys):
    assert main(["run", str(experiment_dir / "experiment.toml"), "--out", str(experiment_dir / "cli"), "--quiet"]) == 0
    output = capsys.readouterr().out
    assert (
        "set_difference_p0.05_q0.1" in output
        and "overlap (set difference) locks & bread" in output
        and "chance" in output
    )
    assert (experiment_dir / "cli" / "result.json").exists()

    args = [
        "prune",
        "--model",
        str(tiny_model_dirs["llama"]),
        "--device",
        "cpu",
        "--harmful",
        str(experiment_dir / "harmful.jsonl"),
        "--benign",
        str(experiment_dir / "benign.jsonl"),
        "--method",
        "signed_snip",
        "--max-new-tokens",
        "4",
        "--quiet",
    ]
    assert main([*args, "--p", "0.05", "--q", "0.1", "--out", str(experiment_dir / "prune")]) == 0
    assert (experiment_dir / "prune" / "masks" / "set_difference_p0.05_q0.1.safetensors").exists()
    assert (experiment_dir / "prune" / "scores" / "harmful.safetensors").exists()
    capsys.readouterr()
    assert main([*args, "--p", "1.5", "--q", "0.1", "--out", str(experiment_dir / "bad")]) == 2
    assert r"p must be a fraction in (0, 1]" in capsys.readouterr().err
    _write(experiment_dir / "no_response.jsonl", [{"text": "how do i bake bread ?"}])
    assert (
        main([*args[:6], str(experiment_dir / "no_response.jsonl"), *args[7:], "--out", str(experiment_dir / "bad2")])
        == 2
    )
    assert "has no response" in capsys.readouterr().err


def test_run_help_documents_the_toml_keys(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for key in (
        "method = 'signed_snip'",
        "random_seeds =",
        "[evaluation]",
        "evaluation.judge =",
        "[categories.NAME]",
        "kwargs:",
        "where:",
    ):
        assert key in text, key


def test_bundled_circuit_parses():
    config = load_config(CIRCUIT)
    assert config.model == "organism" and config.method == "signed_snip"
    assert set(config.categories) == {"weapons", "cyber", "benign_a", "benign_b"}
    assert config.evaluation.judge == "organism-harm"


def test_small_harm_pruning_run_on_the_organism(tmp_path):
    """circuits/harm_pruning/harm_pruning.toml, small: pruning lowers triggered harmful content more than a random
    mask."""
    organisms = pytest.importorskip("interp.organisms", reason="the organisms package is not installed")
    if "default" not in organisms.available_organisms():
        pytest.skip(
            "the bundled organism (assets/organisms/default) is not trained yet: run `interp organism train --out "
            "assets/organisms/default`"
        )
    config = load_config(CIRCUIT)
    small_eval = dataclasses.replace(
        config.evaluation,
        harmful=dataclasses.replace(config.evaluation.harmful, limit=24),
        benign_prompts=None,
        benign_judge=None,
        benign_pairs=dataclasses.replace(config.evaluation.benign_pairs, limit=24),
        tasks=dataclasses.replace(config.evaluation.tasks, limit=16),
    )
    config = dataclasses.replace(
        config, n_samples=32, q=(max(config.q),), p=(config.p[0],), evaluation=small_eval, evaluate_categories=False
    )
    result = run_experiment(config, tmp_path / "run", progress=False)
    label = f"set_difference_p{config.p[0]:g}_q{config.q[0]:g}"
    drop = -result.change(label, "harm_judge_rate")
    random_drop = -result.change(f"random_p{config.p[0]:g}_q{config.q[0]:g}_seed0", "harm_judge_rate")
    assert result.baseline.metrics["harm_judge_rate"] >= 0.8, "the organism should comply when triggered"
    assert drop > random_drop + 0.2, f"set difference lowered harm by {drop:.2f}, a random mask by {random_drop:.2f}"
    assert result.overlaps and result.overlaps[0].overlap.enrichment > 2


# ---- experiments of every analysis (interp run with analysis = ...) ---------------------------------

IOI = [
    (
        "when mary and john went to the store , john gave a drink to",
        "when mary and john went to the store , mary gave a drink to",
    ),
    (
        "when john and mary went to the store , mary gave a drink to",
        "when john and mary went to the store , john gave a drink to",
    ),
]


def one_hot_embedder(texts):
    """A sentence embedder for the tests: one direction per distinct text."""
    import numpy as np

    index = {text: row for row, text in enumerate(dict.fromkeys(texts))}
    out = np.zeros((len(texts), max(len(index), 1)))
    for row, text in enumerate(texts):
        out[row, index[text]] = 1.0
    return out


def _toml(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture
def data_dir(tmp_path) -> Path:
    _write(
        tmp_path / "prompts.jsonl",
        [{"text": row["text"], "label": "harmful" if i % 2 else "benign"} for i, row in enumerate(HARMFUL + HARMFUL)],
    )
    _write(tmp_path / "clean.jsonl", [{"text": clean} for clean, _ in IOI])
    _write(tmp_path / "corrupt.jsonl", [{"text": corrupt} for _, corrupt in IOI])
    return tmp_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'analysis = "lense"',
            "unknown analysis 'lense' in the config. Did you mean 'lens'? Known analyses: cache, lens, patching, "
            "probes, resampling, pruning, directions, recognition, dictionary, graph.",
        ),
        (
            'analysis = "lens"\ntop_kk = 3\n[prompts]\npath = "p.jsonl"',
            "unknown key 'top_kk' in the config. Did you mean 'top_k'?",
        ),
        ('analysis = "lens"\n[prompts]\npth = "p.jsonl"', "unknown key 'pth' in [prompts]. Did you mean 'path'?"),
        (
            'analysis = "lens"\ntop_k = "five"\n[prompts]\npath = "p.jsonl"',
            "'top_k' in the config must be an integer, got 'five'.",
        ),
        (
            'analysis = "lens"\nsites = ["resid_pre", 3]\n[prompts]\npath = "p.jsonl"',
            "'sites' in the config must be a list of strings, got ['resid_pre', 3].",
        ),
        (
            'analysis = "lens"\n[prompts]\npath = "p.jsonl"\nlimit = 2.5',
            "'limit' in [prompts] must be an integer, got 2.5.",
        ),
        ('analysis = "lens"\nprompts = "p.jsonl"', "[prompts] must be a table, got str 'p.jsonl'."),
        ('analysis = "cache"\nhooks = ["resid_post"]', "the config is missing 'prompts'."),
        ('analysis = "lens"\ntargets = " a"', "exactly one of a [prompts] table or `store`"),
        (
            'analysis = "patching"\nmetric = "logits"\n[clean]\npath = "c"\n[corrupt]\npath = "d"',
            "metric must be logit_diff, probability or kl, got 'logits'.",
        ),
        ('analysis = "patching"\n[clean]\npath = "c"\n[corrupt]\npath = "d"', "metric logit_diff needs `answer`"),
        ('analysis = "probes"\nstore = "s"\ncv = true', "'cv' in the config must be an integer, got True."),
        ('analysis = "resampling"\nn = 4', "the config is missing 'prompt'."),
        ("evaluation = 3\n[harmful]\npath = 'h'\n[benign]\npath = 'b'", "[evaluation] must be a table, got int 3."),
        (
            "p = 'small'\n[harmful]\npath = 'h'\n[benign]\npath = 'b'\n[evaluation.harmful]\npath = 'h'",
            "'p' in the config must be a list of numbers, got 'small'.",
        ),
    ],
)
def test_every_analysis_validates_its_toml_in_one_line(tmp_path, capsys, text, message):
    path = _toml(tmp_path, "bad", text)
    with pytest.raises(InterpError) as error:
        load_config(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("interp: error: ") and message in err and err.count("\n") == 1, err


def test_overrides_set_any_key_with_a_toml_value(experiment_dir):
    config = load_config(
        experiment_dir / "experiment.toml",
        overrides=["q=[0.2]", "n_samples=2", "evaluation.harmful.limit=1", "method=wanda", "categories={}"],
    )
    assert config.q == (0.2,) and config.n_samples == 2 and config.method == "wanda" and config.categories == {}
    assert config.evaluation.harmful.limit == 1 and config.evaluation.harmful.path == str(
        experiment_dir / "harmful.jsonl"
    )
    with pytest.raises(InterpError, match=r"--set 'n_samples': use KEY=VALUE"):
        load_config(experiment_dir / "experiment.toml", overrides=["n_samples"])
    with pytest.raises(InterpError, match="'n_samples' in the config must be an integer, got 'many'"):
        load_config(experiment_dir / "experiment.toml", overrides=["n_samples=many"])


def test_lens_experiment_is_skipped_when_done_and_recomputed_when_changed(
    data_dir, tiny_model_dirs, monkeypatch, capsys
):
    import interp.lens as lens_module
    from interp.lens import LensResult

    calls = []
    real = lens_module.logit_lens
    monkeypatch.setattr(
        lens_module, "logit_lens", lambda *args, **kwargs: calls.append(kwargs) or real(*args, **kwargs)
    )
    path = _toml(
        data_dir,
        "lens",
        f'analysis = "lens"\nmodel = "{tiny_model_dirs["llama"]}"\ndevice = "cpu"\ntop_k = 3\n[prompts]\npath = '
        '"prompts.jsonl"\nlimit = 3\n',
    )
    out = data_dir / "lens_out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert "lens experiment 'lens' in" in capsys.readouterr().out
    saved = LensResult.load(out)
    assert len(saved.prompts) == 3 and saved.top_tokens and len(saved.top_tokens[0][0][0]) == 3
    record = json.loads((out / "config.json").read_text())
    assert (
        record["analysis"] == "lens"
        and record["top_k"] == 3
        and record["prompts"]["path"] == str(data_dir / "prompts.jsonl")
    )
    assert (out / "lens.html").exists() and len(calls) == 1

    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert len(calls) == 1, "the same config and data ran again"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--set", "top_k=2"]) == 0
    assert len(calls) == 2 and len(LensResult.load(out).top_tokens[0][0][0]) == 2
    assert json.loads((out / "config.json").read_text())["top_k"] == 2
    _write(data_dir / "prompts.jsonl", [{"text": "the answer is"}] * 3)  # same config, other data
    assert main(["run", str(path), "--out", str(out), "--quiet", "--set", "top_k=2"]) == 0
    assert len(calls) == 3 and LensResult.load(out).prompts == ("the answer is",) * 3


def test_cache_resumes_and_probes_read_its_store(data_dir, tiny_model_dirs, monkeypatch):
    from interp.probes import ProbeResult
    from interp.store import ActivationStore

    model = f'model = "{tiny_model_dirs["llama"]}"\ndevice = "cpu"\n'
    cache = _toml(
        data_dir,
        "cache",
        f'analysis = "cache"\n{model}hooks = ["embed", "resid_post"]\nbatch_size = 2\n[prompts]\npath = '
        '"prompts.jsonl"\n',
    )
    assert main(["run", str(cache), "--out", str(data_dir / "acts"), "--quiet"]) == 0
    store = ActivationStore.open(data_dir / "acts" / "store")
    assert store.n_prompts == 2 * len(HARMFUL) and json.loads((data_dir / "acts" / "config.json").read_text())[
        "hooks"
    ] == ["embed", "resid_post"]
    assert main(["run", str(cache), "--out", str(data_dir / "acts"), "--quiet"]) == 0  # complete: reused
    with pytest.raises(InterpError, match=r"holds a different experiment \(changed: batch_size\)"):
        run_experiment(load_config(cache, overrides=["batch_size=4"]), data_dir / "acts", progress=False)

    probes = _toml(data_dir, "probes", 'analysis = "probes"\nstore = "acts/store"\ncv = 2\nholdout = 0.0\n')
    config = load_config(probes)
    assert config.store == str(data_dir / "acts" / "store")
    result = run_experiment(config, data_dir / "probes_out", progress=False)
    assert isinstance(result, ProbeResult) and ProbeResult.load(data_dir / "probes_out").hooks == result.hooks
    import interp.probes as probes_module

    monkeypatch.setattr(
        probes_module,
        "train_probes",
        lambda *args, **kwargs: pytest.fail("a finished probe experiment was trained again"),
    )
    assert run_experiment(config, data_dir / "probes_out", progress=False).hooks == result.hooks


def test_patching_experiment_writes_its_result_and_config(data_dir, tiny_model_dirs):
    from interp.patching import PatchingResult

    path = _toml(
        data_dir,
        "patch",
        f'''analysis = "patching"
model = "{tiny_model_dirs["llama"]}"
device = "cpu"
answer = " mary"
wrong = " john"
by_position = false
[clean]
path = "clean.jsonl"
[corrupt]
path = "corrupt.jsonl"
''',
    )
    result = run_experiment(load_config(path), data_dir / "patch_out", progress=False)
    assert result.method == "activation" and result.site == "resid_pre" and result.axes == ("layer",)
    assert PatchingResult.load(data_dir / "patch_out").values.shape == result.values.shape
    assert json.loads((data_dir / "patch_out" / "config.json").read_text())["by_position"] is False


def test_resampling_experiment_resumes_its_rollouts(data_dir, tiny_model_dirs, monkeypatch):
    import interp.resampling as resampling_module

    path = _toml(
        data_dir,
        "resample",
        f'''analysis = "resampling"
model = "{tiny_model_dirs["llama"]}"
device = "cpu"
prompt = "Q: what is 2 + 2 ? <think>\\n"
solution = "I add two and two. That makes four.</think> the answer is 4"
gt_answer = 4
answer = "the answer is (\\\\d+)"
n = 2
max_new_tokens = 4
forced = false
matrix = false
embedder = "test_experiments:one_hot_embedder"
''',
    )
    config = load_config(path)
    with pytest.raises(InterpError, match="--allow-imports"):  # an import path runs only when asked for
        run_experiment(config, data_dir / "rs", progress=False)
    result = run_experiment(config, data_dir / "rs", progress=False, allow_imports=True)
    assert result.sentences == ("I add two and two.", "That makes four.")
    rollouts = (data_dir / "rs" / "rollouts" / "rollouts.jsonl").read_text()
    assert len(rollouts.splitlines()) == 2 * 3 and (data_dir / "rs" / "result.json").exists()
    monkeypatch.setattr(
        resampling_module.LocalBackend,
        "generate",
        lambda *args, **kwargs: pytest.fail("finished rollouts were sampled again"),
    )
    assert run_experiment(config, data_dir / "rs", progress=False, allow_imports=True).sentences == result.sentences
    assert (data_dir / "rs" / "rollouts" / "rollouts.jsonl").read_text() == rollouts


CIRCUITS = sorted((REPO / "circuits").glob("*/*.toml"))
REPRODUCES = re.compile(r"(?:\bpython|\binterp run)\s+(circuits/[\w./-]+?\.(?:py|toml))\b")  # a command in a README


@pytest.mark.parametrize("path", CIRCUITS, ids=[path.stem for path in CIRCUITS])
def test_every_circuit_toml_parses(path):
    from interp.experiments import ANALYSES

    config = load_config(path)
    assert isinstance(config, ANALYSES[config.ANALYSIS]) and config.to_dict()["analysis"] == config.ANALYSIS


def circuits_layout_problems(circuits: Path) -> list[str]:
    """What breaks the layout of ``circuits`` (one folder per finding), one line each, paths relative to its parent.

    Only folders at the top level, each with a README.md; each script (``*.py``, compiles) and experiment file
    (``*.toml``, ``load_config`` reads it) lies in a findings folder whose README names it in a command; each
    README names at least one command that reproduces it (``python circuits/...py`` or ``interp run
    circuits/...toml``), and every file its commands name exists.
    """
    import ast

    root, problems = circuits.parent, []
    for path in sorted(circuits.iterdir()):
        name = path.relative_to(root).as_posix()
        if path.name.startswith((".", "_")):  # __pycache__ and the like
            continue
        if not path.is_dir():
            problems.append(f"{name}: a file at the top level; move it into the folder of the finding it reproduces")
            continue
        readme = path / "README.md"
        commands = REPRODUCES.findall(readme.read_text(encoding="utf-8")) if readme.is_file() else []
        if not readme.is_file():
            problems.append(f"{name}/: no README.md")
        elif not commands:
            problems.append(
                f"{name}/README.md: names no command that reproduces it (python circuits/... or interp run ...)"
            )
        for command in dict.fromkeys(commands):
            if not (root / command).is_file():
                problems.append(f"{name}/README.md: {command} does not exist")
        for script in sorted(path.glob("*.py")) + sorted(path.glob("*.toml")):
            relative = script.relative_to(root).as_posix()
            if relative not in commands:
                problems.append(f"{relative}: no command in {name}/README.md names it")
            try:
                if script.suffix == ".py":
                    ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
                else:
                    load_config(script)
            except (SyntaxError, InterpError) as error:
                problems.append(f"{relative}: {type(error).__name__}: {error}")
    return problems


def test_every_findings_folder_has_what_reproduces_it():
    """circuits/ holds one folder per finding: its README and the script or TOML that reproduces it."""
    folders = {path.name for path in (REPO / "circuits").iterdir() if path.is_dir()}
    assert folders >= {"harm_pruning", "cot_anchors", "probe_recognition", "tuned_lens_smollm2", "tuned_lens_qwen"}
    problems = circuits_layout_problems(REPO / "circuits")
    assert not problems, "\n".join(problems)


def test_a_broken_circuits_layout_is_reported(tmp_path):
    """Each way to break the layout, planted beside a folder that follows it, is reported once; the good one is not."""
    circuits = tmp_path / "circuits"
    planted = {
        "good/README.md": "Experiment: `python circuits/good/good.py --out runs/good`, or\n"
        "`interp run circuits/good/good.toml --out DIR`.\n",
        "good/good.py": "print('ok')\n",
        "good/good.toml": 'analysis = "lens"\ntargets = " sure"\n[prompts]\npath = "p.jsonl"\n',
        "good/results/notes.md": "a subfolder of results is fine\n",
        "stray.py": "print('beside the folders')\n",
        "no_readme/no_readme.py": "print('ok')\n",
        "silent/README.md": "Numbers, but no command.\n",
        "bad/README.md": "`python circuits/bad/bad.py`, `interp run circuits/bad/bad.toml`, "
        "`python circuits/bad/gone.py`.\n",
        "bad/bad.py": "def broken(:\n",
        "bad/bad.toml": "analysis = [unclosed\n",
        "bad/other.toml": 'analysis = "lens"\ntargets = " sure"\n[prompts]\npath = "p.jsonl"\n',
        "__pycache__/stray.cpython-312.pyc": "",
    }
    for name, text in planted.items():
        (circuits / name).parent.mkdir(parents=True, exist_ok=True)
        (circuits / name).write_text(text)
    problems = circuits_layout_problems(circuits)
    expected = [
        "circuits/bad/README.md: circuits/bad/gone.py does not exist",
        "circuits/bad/bad.py: SyntaxError",
        "circuits/bad/bad.toml: InterpError",
        "circuits/bad/other.toml: no command in circuits/bad/README.md names it",
        "circuits/no_readme/: no README.md",
        "circuits/no_readme/no_readme.py: no command in circuits/no_readme/README.md names it",
        "circuits/silent/README.md: names no command",
        "circuits/stray.py: a file at the top level",
    ]
    for start in expected:
        assert sum(line.startswith(start) for line in problems) == 1, (start, problems)
    assert len(problems) == len(expected), problems


@pytest.mark.parametrize(
    ("folder", "overrides"),
    [
        ("snip_sweep", ["evaluate_categories=false", "method=snip", "p=[0.01, 0.1, 0.3]"]),
        ("signed_snip_p0.01_q0.01", ["evaluate_categories=false", "q=[0.01]"]),
    ],
)
def test_harm_pruning_findings_came_from_the_circuit_toml(folder, overrides):
    """circuits/harm_pruning/FOLDER/config.json is the finding's harm_pruning.toml with the overrides its README names
    (keys added since, such as ``offset`` or ``[completions]``, at defaults that leave the run as it was)."""
    added: list[str] = []
    recorded = json.loads((REPO / "circuits" / "harm_pruning" / folder / "config.json").read_text())
    current = load_config(CIRCUIT, overrides=overrides).to_dict()
    assert _recorded_part(current, recorded, added) == {"analysis": "pruning", **recorded}


def _recorded_part(current, recorded, added: list) -> dict:
    """``current`` without the keys added since ``recorded`` was written; each added key must hold its neutral
    default."""
    kept = {}
    for key, value in current.items():
        if key == "analysis" or key in recorded:
            kept[key] = (
                _recorded_part(value, recorded[key], added)
                if isinstance(value, dict) and isinstance(recorded.get(key), dict)
                else value
            )
        else:
            added.append(key)
            assert value in (None, 0, False, 3, {}), (
                f"key {key!r} was added with a default that changes the run: {value!r}"
            )
    return kept


def test_harm_pruning_circuit_runs_at_a_tiny_size_through_interp_run(tmp_path, capsys):
    """circuits/harm_pruning/harm_pruning.toml through the dispatch, shrunk with --set: every point and overlap."""
    organisms = pytest.importorskip("interp.organisms", reason="the organisms package is not installed")
    if "default" not in organisms.available_organisms():
        pytest.skip(
            "the bundled organism (assets/organisms/default) is not trained yet: run `interp organism train --out "
            "assets/organisms/default`"
        )
    tiny = [
        "n_samples=4",
        "q=[0.01]",
        "evaluate_categories=false",
        "evaluation.max_new_tokens=8",
        "evaluation.task_max_new_tokens=8",
    ]
    tiny += [f"evaluation.{name}.limit=4" for name in ("harmful", "benign_prompts", "benign_pairs", "tasks")]
    tiny += [f"categories.{name}.limit=4" for name in ("weapons", "cyber", "benign_a", "benign_b")]
    argv = ["run", str(CIRCUIT), "--out", str(tmp_path / "run"), "--quiet"] + [
        part for item in tiny for part in ("--set", item)
    ]
    assert main(argv) == 0
    output = capsys.readouterr().out
    assert (
        "set_difference_p0.01_q0.01" in output
        and "random_p0.01_q0.01_seed0" in output
        and "overlap (set difference) weapons & cyber" in output
    )
    result = PruningResult.load(tmp_path / "run")
    assert [point.label for point in result.points] == [
        "baseline",
        "set_difference_p0.01_q0.01",
        "random_p0.01_q0.01_seed0",
    ]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["n_samples"] == 4


def test_prune_flags_the_config_and_the_library_share_their_defaults():
    """One source (interp.defaults) for the pruning defaults of the flags, HarmPruningConfig and the functions."""
    import inspect

    from interp import defaults
    from interp.commands import build_parser
    from interp.experiments import EvaluationConfig
    from interp.pruning import PruningEvaluator, importance_scores, run_sweep

    args = build_parser().parse_args(["prune", "--harmful", "h.jsonl", "--benign", "b.jsonl", "--out", "o"])
    fields = {item.name: item.default for item in dataclasses.fields(HarmPruningConfig)}
    signature = {name: parameter.default for name, parameter in inspect.signature(run_sweep).parameters.items()}
    scores = inspect.signature(importance_scores).parameters
    assert args.method == fields["method"] == signature["method"] == scores["method"].default == defaults.PRUNE_METHOD
    assert (
        args.batch_size
        == fields["batch_size"]
        == signature["batch_size"]
        == scores["batch_size"].default
        == defaults.PRUNE_BATCH_SIZE
    )
    assert args.n_samples == fields["n_samples"] == signature["n_samples"] == defaults.PRUNE_N_SAMPLES
    assert (args.p,) == fields["p"] == tuple(signature["p"]) and (args.q,) == fields["q"] == tuple(signature["q"])
    assert (
        tuple(int(seed) for seed in args.random_seeds.split(","))
        == fields["random_seeds"]
        == tuple(signature["random_seeds"])
    )
    evaluation = {item.name: item.default for item in dataclasses.fields(EvaluationConfig)}
    evaluator = {item.name: item.default for item in dataclasses.fields(PruningEvaluator)}
    for name in ("max_new_tokens", "task_max_new_tokens", "batch_size"):
        assert evaluation[name] == evaluator[name], name
    assert args.max_new_tokens == evaluator["max_new_tokens"]


def test_a_model_directory_written_relative_to_the_toml_is_resolved_from_it(tmp_path):
    from interp.experiments import load_config

    folder = tmp_path / "circuits"
    folder.mkdir()
    path = folder / "x.toml"
    path.write_text(
        'analysis = "pruning"\nmodel = "../runs/model"\n[harmful]\npath = "h.jsonl"\n[benign]\npath = '
        '"b.jsonl"\n[evaluation.tasks]\npath = "t.jsonl"\n'
    )
    assert load_config(path).model == str((tmp_path / "runs" / "model").resolve())
    path.write_text(path.read_text().replace('"../runs/model"', '"qwen2.5-coder-0.5b-instruct"'))
    assert load_config(path).model == "qwen2.5-coder-0.5b-instruct", "a registered name is left as it is"
