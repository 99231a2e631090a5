"""Render the README's figures: PNG screenshots of the figures in an `interp demo` report.

    interp demo --out out/demo && python assets/figures/render.py out/demo

Uses headless Chromium (Debian: apt-get install chromium chromium-driver) through selenium.
"""

import sys
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# figure index in the report -> file name (the report's order: store, lens x3, patching x3, pruning, probes, resampling)
FIGURES = {1: "logit_lens.png", 2: "logit_lens_trigger.png", 5: "patching_heads.png", 7: "harm_pruning.png",
           8: "probes.png", 9: "cot_resampling.png"}


def main(demo_dir: str) -> None:
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--window-size=1200,4000", "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get((Path(demo_dir) / "index.html").resolve().as_uri())
        figures = driver.find_elements("css selector", "div.figure")
        for index, name in FIGURES.items():
            driver.execute_script("arguments[0].scrollIntoView();", figures[index])
            figures[index].screenshot(str(Path(__file__).parent / name))
            print("wrote", name)
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/demo")
