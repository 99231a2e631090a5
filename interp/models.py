"""Load a causal LM as a transformer_lens ``TransformerBridge``: hub ids, local directories, organisms.

>>> model = load_model("organism")                      # doctest: +SKIP
>>> model = load_model("./my-llama", dtype="bfloat16")  # doctest: +SKIP
>>> model = load_model("Qwen/Qwen2.5-0.5B-Instruct")    # doctest: +SKIP  (needs the hub or its cache)
"""

import logging
import os
from pathlib import Path

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp import compat
from interp.errors import InterpError

ORGANISM_PREFIX = "organism"

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
) -> TransformerBridge:
    """Load ``name_or_path`` as an eval-mode ``TransformerBridge`` with raw Hugging Face weights.

    Args:
        name_or_path: ``"organism"`` / ``"organism:NAME"`` (bundled, offline), a local Hugging Face
            directory (config.json + weights + tokenizer), or a hub id such as ``"gpt2"``.
        device: "cpu", "cuda", "cuda:1", ... (default: CUDA if available, else CPU).
        dtype: "float32", "bfloat16", "float16" or a torch dtype.
        trust_remote_code: run model code shipped with a hub repo (off unless you ask).
    """
    torch_dtype = _resolve_dtype(dtype)
    device = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    source, label = _resolve_source(str(name_or_path))
    _quiet_loading_logs()
    compat.install()
    try:
        model = TransformerBridge.boot_transformers(
            source, device=device, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    except InterpError:
        raise
    except Exception as error:  # noqa: BLE001 - turned into one actionable message
        raise _load_error(str(name_or_path), source, error) from error
    model.eval()
    model.cfg.model_name = label
    return model


def model_id(model: TransformerBridge) -> str:
    """The name a model was loaded under (hub id, directory, or ``organism:NAME``)."""
    return str(getattr(model.cfg, "model_name", "unknown"))


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InterpError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(set(_DTYPES)))}.")
    return _DTYPES[dtype]


def _resolve_source(name: str) -> tuple[str, str]:
    """(what to pass to the loader, the label recorded in provenance)."""
    if name == ORGANISM_PREFIX or name.startswith(ORGANISM_PREFIX + ":"):
        organism = name.partition(":")[2] or "default"
        from interp.organisms import organism_path

        return str(organism_path(organism)), f"{ORGANISM_PREFIX}:{organism}"
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InterpError(f"{name} is a file; pass the model's directory (the one holding config.json).")
        if not (path / "config.json").exists():
            raise InterpError(
                f"{name} has no config.json, so it is not a Hugging Face model directory. "
                "Save the model with `model.save_pretrained(dir)` and `tokenizer.save_pretrained(dir)`."
            )
        return str(path.resolve()), str(path.resolve())
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(os.sep)
    if looks_like_path:
        raise InterpError(f"no model directory at {name}. Check the path, or pass a hub id like 'gpt2'.")
    return name, name


def _load_error(name: str, source: str, error: Exception) -> InterpError:
    text = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    unreachable = any(
        word in text.lower()
        for word in ("connection", "offline", "resolve", "couldn't connect", "not a valid model identifier", "max retries", "name or service", "network", "repository not found", "does not appear")
    )
    if Path(source).is_dir():
        return InterpError(f"could not load the model directory {name}: {text}")
    if unreachable or offline:
        return InterpError(
            f"cannot find model {name!r}: it is not a local directory, and the Hugging Face hub "
            f"{'is disabled (HF_HUB_OFFLINE=1)' if offline else 'could not be reached or has no such model'} "
            f"({text}). Pass a local model directory, pre-download it with `huggingface-cli download {name}`, "
            "or use the bundled 'organism'."
        )
    return InterpError(f"could not load model {name!r}: {text}")


def _quiet_loading_logs() -> None:
    for logger in ("transformers", "transformer_lens", "huggingface_hub"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - older transformers
        pass
