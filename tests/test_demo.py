"""`interp demo`: the report has every module's figure and key numbers, and renders in a real browser."""

import json
import shutil
from pathlib import Path

import pytest

from interp.organisms import available_organisms

pytestmark = pytest.mark.skipif("default" not in available_organisms(), reason="the bundled organism is missing")

SECTIONS = ("Activation store", "Logit lens", "Activation and attribution patching", "Harm-weight pruning",
            "Linear probes on h_last", "Chain-of-thought resampling")
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
    for stage in ("store", "lens", "patching", "pruning", "probes", "resampling"):
        assert (demo_dir / stage).is_dir(), stage


def test_docstring_examples_run():
    import doctest

    import interp.demo
    import interp.report

    for module in (interp.report, interp.demo):
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
        n_figures = driver.execute_script("return document.querySelectorAll('div.figure').length")
        rendered = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.figure')).filter("
            "d => d.querySelector('svg.main-svg, canvas')).length")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
    assert n_figures >= len(SECTIONS), f"only {n_figures} figures in the report"
    assert rendered == n_figures, f"{n_figures - rendered} of {n_figures} figures did not render"
    assert not errors, errors
