# Two commands: `make demo` runs the main job on the bundled default, `make test` runs every test.
# Each does its own set-up: a virtual environment in .venv with interp installed (editable).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: demo test setup clean bench browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so no other requirement can pull a different build
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "torch==2.13.0"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/interp demo --out $(OUT)/demo
	@echo "open $(OUT)/demo/index.html"

test: $(STAMP) browser
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

# The report's browser test needs Chromium; without root or a package mirror it is skipped (with the reason).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
	  echo "Chromium could not be installed: the browser test will be skipped."

bench: $(STAMP)
	$(BIN)/python bench/cache.py

clean:
	rm -rf $(OUT) .pytest_cache
