"""`interp demo`: the report has every module's figure and key numbers, and renders in a real browser;
the organism's numbers are in their measured ranges, and a failing self-check stops the demo without a report."""

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from interp.organisms import available_organisms

pytestmark = pytest.mark.skipif("default" not in available_organisms(), reason="the bundled organism is missing")

SECTIONS = ("Activation store", "Logit lens", "Activation and attribution patching", "Harm-weight pruning",
            "Linear probes on h_last", "Chain-of-thought resampling", "Attribution graph")
CHECKS = ("resampling rollouts with text", "pruning baseline harm_judge_rate", "pruning baseline task_accuracy",
          "resampling rollouts answered", "computing sentences with nonzero resampling importance")
GRAPH_CHECKS = ("logit difference removed by ablating the graph's top features",
                "logit difference removed by random features of the same layers")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from interp.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    return out


def test_report_has_every_module_and_the_key_numbers(demo_dir):
    html = (demo_dir / "index.html").read_text()
    for title in SECTIONS:
        assert f">{title}</h2>" in html, title
    assert html.count("<script type=\"text/javascript\">/**") == 1, "plotly.js must be inlined exactly once"
    assert "<script src=" not in html, "the report must load nothing: it works offline"
    summary = json.loads((demo_dir / "summary.json").read_text())
    pruning = summary["pruning"]
    assert {"baseline", "set_difference_p0.01_q0.005", "set_difference_p0.1_q0.005", "random_p0.01_q0.005_seed0"} <= set(pruning)
    assert pruning["baseline"]["harm_judge_rate"] >= 0.9, "the triggered organism produces harmful content"
    assert 0.0 <= summary["probe_auroc"] <= 1.0 and summary["probe_best_layer"]
    assert len(summary["patching_top_heads"]) == 3 and len(summary["resampling_top_sentences"]) == 3
    graph = summary["graph"]
    assert graph["replacement"] >= 0.8 and graph["completeness"] >= 0.9, graph
    assert graph["top_removed"] >= 0.5 and graph["random_removed_mean"] <= 0.1, graph
    for stage in ("store", "lens", "patching", "pruning", "probes", "resampling", "graph"):
        assert (demo_dir / stage).is_dir(), stage


def test_the_organisms_numbers_are_in_their_measured_ranges_and_every_check_passed(demo_dir):
    """The README's measurements, with room for --quick's samples: triggered harm 100% (>= 0.9), arithmetic 85%
    greedy (>= 0.6), and the computing sentences of the chain of thought move its answer (broken KV-cached
    generation gave 0.0, 0.0 and importance 0 everywhere, with a report all the same)."""
    summary = json.loads((demo_dir / "summary.json").read_text())
    baseline = summary["pruning"]["baseline"]
    assert baseline["harm_judge_rate"] >= 0.9, baseline
    assert baseline["task_accuracy"] >= 0.6, baseline
    computing = [s for s in summary["resampling_sentences"] if s["role"] == "compute"]
    assert computing, summary["resampling_sentences"]
    assert any(s["importance"] is not None and abs(s["importance"]) > 0 for s in computing), computing
    rollouts = summary["resampling_rollouts"]
    assert rollouts["total"] > 0 and rollouts["answered"] >= 0.8 * rollouts["total"], rollouts
    assert tuple(check["name"] for check in summary["checks"]) == CHECKS + GRAPH_CHECKS
    assert summary["passed"] is True and all(check["passed"] for check in summary["checks"]), summary["checks"]
    assert ">Self-checks</h2>" in (demo_dir / "index.html").read_text()


def _broken_pruning(model, out, quick):
    """The pruning stage's numbers under broken KV-cached generation (transformers 5.24 before interp.model.compat)."""
    from interp.report import Section

    baseline = {"kind": "baseline", "fraction": 0.0, "n_pruned": 0, "harm_judge_rate": 0.0, "task_accuracy": 0.0}
    return Section("Harm-weight pruning", "stand-in"), {"pruning": {"baseline": baseline}}


def _broken_resampling(model, out, quick):
    """The resampling stage's numbers under broken generation: rollouts that never reach an answer, importance 0."""
    from interp.report import Section

    roles = ("start", "compute", "filler", "compute")
    sentences = [{"sentence": f"sentence {i}", "role": role, "importance": 0.0} for i, role in enumerate(roles)]
    rollouts = {"total": 60, "with_text": 60, "answered": 0}
    return Section("Chain-of-thought resampling", "stand-in"), {
        "resampling_top_sentences": [], "resampling_sentences": sentences, "resampling_rollouts": rollouts}


def test_a_failing_check_exits_non_zero_naming_it_and_writes_no_report(tmp_path, monkeypatch, capsys):
    import interp.demo.organism
    from interp.cli import main

    monkeypatch.setattr(interp.demo.organism, "_stage_pruning", _broken_pruning)
    monkeypatch.setattr(interp.demo.organism, "_stage_resampling", _broken_resampling)
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("an earlier run's report")
    assert main(["demo", "--out", str(out), "--quick"]) == 2
    found = re.search(r"^interp: error: (demo self-check failed: .*)$", capsys.readouterr().err, re.MULTILINE)
    assert found, "the CLI prints the failed checks as one line"
    message = found.group(1)
    for failed in ("pruning baseline harm_judge_rate = 0 (expected >= 0.9)", "pruning baseline task_accuracy = 0 (expected >= 0.6)",
                   "resampling rollouts answered = 0 (expected >= 0.8)",
                   "computing sentences with nonzero resampling importance = 0 (expected >= 1 of 2)"):
        assert failed in message, message
    assert "rollouts with text" not in message, "a passing check is not reported as failed"
    assert not (out / "index.html").exists(), "no report of failed numbers, and no earlier report left to read as this one"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False
    assert {check["name"]: check["passed"] for check in summary["checks"]} == {
        name: name == CHECKS[0] or name in GRAPH_CHECKS for name in CHECKS + GRAPH_CHECKS
    }
    assert (out / "lens").is_dir() and (out / "probes").is_dir(), "each stage's result is kept beside"


def test_only_the_generic_checks_apply_to_other_models():
    from interp.demo import check_results

    broken = {"pruning": {"baseline": {"harm_judge_rate": 0.0, "task_accuracy": 0.0}},
              "resampling_sentences": [{"sentence": "s", "role": "compute", "importance": 0.0}]}
    produced = check_results({**broken, "resampling_rollouts": {"total": 8, "with_text": 8, "answered": 0}}, "gpt2")
    assert [(check.name, check.passed) for check in produced] == [("resampling rollouts with text", True)]
    silent = check_results({**broken, "resampling_rollouts": {"total": 8, "with_text": 0, "answered": 0}}, "gpt2")
    assert [(check.name, check.passed) for check in silent] == [("resampling rollouts with text", False)]
    organism = check_results({**broken, "resampling_rollouts": {"total": 8, "with_text": 8, "answered": 0}}, "organism:default")
    assert [check.name for check in organism] == list(CHECKS) and [check.passed for check in organism] == [True] + [False] * 4


def test_docstring_examples_run():
    import doctest

    import interp.demo
    import interp.demo.organism
    import interp.demo.pretrained
    import interp.report

    for module in (interp.report, interp.demo, interp.demo.organism, interp.demo.pretrained):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_rerun_resumes_the_cached_store(demo_dir):
    manifest = json.loads((demo_dir / "store" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["n_prompts"] == 48


def _chromium() -> tuple[str, str] | None:
    for browser in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(browser) and shutil.which("chromedriver"):
            return shutil.which(browser), shutil.which("chromedriver")
    return None


@pytest.mark.slow
def test_report_renders_every_figure_in_headless_chromium(demo_dir):
    webdriver = pytest.importorskip("selenium.webdriver")
    found = _chromium()
    if found is None:
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    browser, driver_path = found
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get((demo_dir / "index.html").resolve().as_uri())
        # a loaded machine can take a while to build the page's figures: wait for them (up to 60 s), then count
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and driver.execute_script(
            "return document.readyState !== 'complete' || document.querySelectorAll('div.figure').length === 0"
        ):
            time.sleep(0.5)
        n_figures = driver.execute_script("return document.querySelectorAll('div.figure').length")
        count_rendered = (
            "return Array.from(document.querySelectorAll('div.figure')).filter("
            "d => d.querySelector('svg.main-svg, canvas')).length"
        )
        while time.monotonic() < deadline and driver.execute_script(count_rendered) < n_figures:
            time.sleep(0.5)  # plotly draws each figure after the page has loaded
        rendered = driver.execute_script(count_rendered)
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
    assert n_figures >= len(SECTIONS), f"only {n_figures} figures in the report"
    assert rendered == n_figures, f"{n_figures - rendered} of {n_figures} figures did not render"
    assert not errors, errors


# ---- a pretrained model: known mechanisms, and the identities ---------------------------------------

PRETRAINED_CHECKS = ("logit lens KL to the output at the last layer", "direct logit attribution: |sum of parts - logit difference|",
                     "IOI prompts with logit difference > 0", "induction: repeat loss / first-occurrence loss",
                     "induction: top-head ablation / random-head ablation")  # fmt: skip


def test_pretrained_checks_hold_the_known_mechanisms_and_the_identities():
    from interp.demo import check_results

    measured = {"lens_last_layer_kl": 0.0, "dla_identity_error": 4.8e-7, "ioi_fraction_positive": 1.0,
                "induction_loss_ratio": 0.285, "induction_ablation_ratio": 33.7}  # the quick demo on SmolLM2-135M-Instruct
    checks = check_results({"pretrained": measured}, "smollm2-135m-instruct")
    assert [check.name for check in checks] == list(PRETRAINED_CHECKS) and all(check.passed for check in checks)
    broken = {"lens_last_layer_kl": 0.5, "dla_identity_error": float("nan"), "ioi_fraction_positive": 0.5, "induction_loss_ratio": 0.9}
    failed = {check.name: check.describe() for check in check_results({"pretrained": broken}, "smollm2-135m-instruct") if not check.passed}
    assert set(failed) == set(PRETRAINED_CHECKS), "a wrong, NaN or missing number fails its check"
    assert failed[PRETRAINED_CHECKS[-1]].endswith("= missing (expected >= 2)")


ALIGNMENT_CHECKS = ("held-out harmful requests refused by the unmodified model", "held-out harmful requests refused with the refusal direction ablated",
                    "held-out benign requests refused with the refusal direction added", "harm probe AUROC with the refusal direction orthogonalised out",
                    "hook ablation vs orthogonalised weights: max |log-prob difference|")  # fmt: skip


def test_alignment_checks_hold_the_refusal_direction_and_recognition():
    from interp.demo import check_results

    measured = {"baseline_harmful_refusal": 0.5625, "ablated_harmful_refusal": 0.0625, "added_benign_refusal": 0.5,
                "probe_auroc_orthogonalised": 0.98, "hook_vs_weights": 2e-6}  # fmt: skip
    checks = check_results({"alignment": measured}, "qwen2.5-coder-0.5b-instruct")
    assert [check.name for check in checks] == list(ALIGNMENT_CHECKS) and all(check.passed for check in checks)
    smollm2_like = {"baseline_harmful_refusal": 0.06, "ablated_harmful_refusal": 0.3, "added_benign_refusal": 0.0, "hook_vs_weights": float("nan")}
    failed = {check.name for check in check_results({"alignment": smollm2_like}, "smollm2-135m-instruct") if not check.passed}
    assert failed == set(ALIGNMENT_CHECKS), "a model that does not refuse, a missing or a NaN number fails its check"


def test_a_chat_model_that_refuses_gets_the_alignment_demo():
    from interp.demo import alignment

    assert "qwen2.5-coder-0.5b-instruct" in alignment.REFUSING_MODELS and "smollm2-135m-instruct" not in alignment.REFUSING_MODELS
    sets = alignment.prompt_sets(16, 8, 8)
    texts = [text for prompts in sets.values() for text in prompts.texts]
    assert len(texts) == len(set(texts)) == 2 * (16 + 8 + 8), "training, scoring and held-out requests are disjoint"


@pytest.fixture(scope="module")
def random_llama_with_smollm2_tokenizer(smollm2, tmp_path_factory):
    """A tiny random Llama with the real model's byte-level BPE tokenizer (one-token names for the IOI prompts)."""
    import transformers

    from interp.testing import tiny_config

    path = tmp_path_factory.mktemp("random_llama_bpe")
    tokenizer = smollm2.tokenizer
    config = tiny_config("llama", vocab_size=len(tokenizer), n_layers=2, d_model=64, n_heads=8)  # enough heads for 5 random same-layer draws
    config.pad_token_id, config.bos_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def test_demo_on_a_random_llama_runs_every_stage_and_refuses_to_report_random_numbers(random_llama_with_smollm2_tokenizer, tmp_path):
    """Random weights run every pretrained stage (lens, DLA, attention, induction, IOI patching) but show no mechanism."""
    from interp.demo import run_demo
    from interp.errors import InterpError

    with pytest.raises(InterpError, match="demo self-check failed") as failure:
        run_demo(str(random_llama_with_smollm2_tokenizer), tmp_path / "out", device="cpu", quick=True, progress=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["seconds"]) == {"lens", "dla", "induction", "ioi", "total"}
    checks = {check["name"]: check for check in summary["checks"]}
    assert list(checks) == list(PRETRAINED_CHECKS)
    assert checks[PRETRAINED_CHECKS[0]]["passed"] and checks[PRETRAINED_CHECKS[1]]["passed"], "the identities hold on any weights"
    assert "induction: repeat loss / first-occurrence loss" in str(failure.value), "random weights do not copy"
    assert not (tmp_path / "out" / "index.html").exists()
    for stage in ("lens", "dla", "attention", "induction", "ioi/heads", "ioi/heads_attribution"):
        assert (tmp_path / "out" / stage).is_dir(), stage
