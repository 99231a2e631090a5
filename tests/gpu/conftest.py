"""GPU tests: CUDA caching, patching and pruning scores on the real model, the real vLLM backend.

Every test in this directory is skipped with the reason "no CUDA device" where
``torch.cuda.is_available()`` is false, before any of its fixtures load a model.

    python -m pytest -q tests/gpu          # on a machine with a CUDA GPU
"""

from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skipif(True, reason="no CUDA device")  # a skipif, placed first: it wins over the tests' own skipifs
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip, append=False)


@pytest.fixture(scope="session")
def real_model_cpu():
    """SmolLM2-135M-Instruct in float32 on the CPU: the reference the CUDA runs are compared with."""
    from interp.models import load_model

    return load_model("smollm2-135m-instruct", device="cpu")


@pytest.fixture(scope="session")
def real_model_cuda():
    """SmolLM2-135M-Instruct in float32 on cuda:0 (do not modify its weights in place)."""
    from interp.models import load_model

    return load_model("smollm2-135m-instruct", device="cuda")


@pytest.fixture(scope="session")
def real_model_cuda_bf16():
    """SmolLM2-135M-Instruct in bfloat16 on cuda:0."""
    from interp.models import load_model

    return load_model("smollm2-135m-instruct", device="cuda", dtype="bfloat16")

