"""Shared fixtures: tiny random models of real architectures, built once per test session."""

import json
import math
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPOSITORY = Path(__file__).resolve().parents[1]
ADVBENCH = REPOSITORY / "assets" / "prompts" / "advbench" / "advbench.txt"  # third-party data: MIT, SOURCES.md beside it
LLAMA2_REFUSALS = ADVBENCH.with_name("SFT_aligned_llama2-7b-chat-hf_train_short.csv")
GPU_TESTS = Path(__file__).resolve().parent / "gpu"  # run with `python -m pytest -q tests/gpu` on a machine with a CUDA GPU


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    from interp.testing import build_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: build_tiny_model(arch, root / arch) for arch in ("gpt2", "llama", "qwen2", "gemma", "gemma2")}


_MODELS: dict[str, object] = {}


@pytest.fixture(scope="session")
def load_tiny(tiny_model_dirs):
    """load_tiny("llama") -> TransformerBridge (cached: do not modify its weights in place)."""
    from interp.model import load_model

    def load(arch: str):
        if arch not in _MODELS:
            _MODELS[arch] = load_model(tiny_model_dirs[arch], device="cpu")
        return _MODELS[arch]

    return load


PROMPTS = [
    "the quick brown fox jumps over the lazy dog",
    "how do i bake bread ?",
    "a cat sat",
    "when mary and john went to the store , john gave a drink to mary",
    "1 2 3",
    "the answer is 42 .",
    "fox",
]


THOUGHT_ANCHORS = REPOSITORY / "assets" / "thought_anchors"  # the published data the tests read (MIT; SOURCES.md there)
BLACKMAIL = THOUGHT_ANCHORS / "website_blackmail"


def load_json(directory: Path, name: str):
    return json.loads((directory / name).read_text(encoding="utf-8"))


def blackmail_matches(metric: str, compute) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """Per model, how many published blackmail chunks ``compute(resampled, chunk_text)`` reproduces.

    Returns ``(matched, total)`` under the reference's convention (its last chunk is 0) and the
    count matched directly. Entry at list position k describes chunk k; a chunk whose text is not
    published (deepseek-r1's chunk 22) is skipped.
    """
    report, direct = {}, {}
    for d in sorted(BLACKMAIL.glob("*/*/scenario_0")):
        chunks = load_json(d, "chunks_labeled.json")
        resampled = load_json(d, "chunks_resampled.json")
        text = {c["chunk_idx"]: c["chunk"] for c in chunks}
        matched = direct_matched = total = 0
        for k, entry in enumerate(chunks):
            if k not in text:
                continue
            ours = compute(resampled[str(k)], text[k])
            reference = 0.0 if k == max(text) else ours  # the reference gives the last chunk 0
            total += 1
            matched += math.isclose(reference, entry[metric], abs_tol=1e-9)
            direct_matched += math.isclose(ours, entry[metric], abs_tol=1e-9)
        report[d.parts[-3]] = (matched, total)
        direct[d.parts[-3]] = direct_matched
    return report, direct


def _real_model(name: str):
    """A packaged real model (converted once per machine into $INTERP_HOME; skipped if it cannot be obtained)."""
    from interp.errors import InterpError
    from interp.model import load_model

    try:
        return load_model(name, device="cpu")
    except InterpError as error:
        if os.environ.get("INTERP_REQUIRE_REAL_MODEL") == "1":  # `make test` obtains it first: missing is a failure
            raise
        pytest.skip(f"the real model {name} is not available here: {error}")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct, a real chat model that rarely refuses."""
    return _real_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def qwen():
    """Qwen2.5-Coder-0.5B-Instruct, a real chat model that refuses (untied output matrix, q/k/v biases)."""
    return _real_model("qwen2.5-coder-0.5b-instruct")


# ---- tests/gpu: CUDA caching, patching and pruning scores on the real model, the real vLLM backend ----


REAL_MODEL_FIXTURES = {"smollm2", "qwen", "real_model_cpu", "real_model_cuda"}


def pytest_collection_modifyitems(config, items):
    """Tests that load a packaged real model are marked ``real_model`` (``make test-fast`` leaves them out); every test in
    tests/gpu is skipped with the reason "no CUDA device" without CUDA, before its fixtures load a model."""
    import torch

    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_model)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skipif(True, reason="no CUDA device")  # a skipif, placed first: it wins over the tests' own skipifs
    for item in items:
        if GPU_TESTS in Path(str(item.path)).resolve().parents:
            item.add_marker(skip, append=False)


@pytest.fixture(scope="session")
def real_model_cpu():
    """SmolLM2-135M-Instruct in float32 on the CPU: the reference the CUDA runs are compared with."""
    from interp.model import load_model

    return load_model("smollm2-135m-instruct", device="cpu")


@pytest.fixture(scope="session")
def real_model_cuda():
    """SmolLM2-135M-Instruct in float32 on cuda:0 (do not modify its weights in place)."""
    from interp.model import load_model

    return load_model("smollm2-135m-instruct", device="cuda")


@pytest.fixture(scope="session")
def real_model_cuda_bf16():
    """SmolLM2-135M-Instruct in bfloat16 on cuda:0."""
    from interp.model import load_model

    return load_model("smollm2-135m-instruct", device="cuda", dtype="bfloat16")

