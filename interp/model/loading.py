"""Load a causal LM as a transformer_lens ``TransformerBridge``: registered names, local directories, hub ids.

A name is looked up in the registry of named models first (``interp.model.registry``), then as a
local directory, then as a hub id.

>>> model = load_model("organism")                      # doctest: +SKIP
>>> model = load_model("./my-llama", dtype="bfloat16")  # doctest: +SKIP
>>> model = load_model("Qwen/Qwen2.5-0.5B-Instruct")    # from the hub or its cache # doctest: +SKIP
"""

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.errors import InterpError
from interp.model import compat
from interp.model.registry import did_you_mean, registered_model, registered_models, resolve_model

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
    device_map: str | dict[str, str | int] | None = None,
    max_memory: dict[str | int, str | int] | None = None,
    n_devices: int | None = None,
    offload_folder: str | os.PathLike | None = None,
) -> TransformerBridge:
    """Load ``name_or_path`` as an eval-mode ``TransformerBridge`` with raw Hugging Face weights.

    Args:
        name_or_path: a registered name (``registered_models()``; e.g. ``"organism"`` /
            ``"organism:NAME"``, bundled, offline), a local Hugging Face directory (config.json +
            weights + tokenizer), or a hub id such as ``"gpt2"``.
        device: "cpu", "cuda", "cuda:1", ... (default: CUDA if available, else CPU). Not with
            ``device_map`` or ``n_devices``.
        dtype: "float32", "bfloat16", "float16" or a torch dtype.
        trust_remote_code: run model code shipped with a hub repo (off unless you ask).
        device_map: split the layers over devices, Hugging Face style: ``"auto"``, ``"balanced"``
            or ``{"model.layers.0": 0, ..., "model.layers.31": "cpu", "lm_head": "disk"}``
            (``"disk"`` needs ``offload_folder``). Hooks run where each layer sits; results
            come back on the CPU.
        max_memory: per-device budget for ``"auto"``/``"balanced"``: ``{0: "70GiB", 1: "70GiB", "cpu": "200GiB"}``.
        n_devices: split over this many CUDA devices (shorthand for a balanced ``device_map``).
        offload_folder: where weights mapped to ``"disk"`` are kept.
    """
    torch_dtype = _resolve_dtype(dtype)
    placement = _placement(device, device_map, max_memory, n_devices, offload_folder)
    source, label = _resolve_source(str(name_or_path))
    _quiet_loading_logs()
    compat.install()
    try:
        model = TransformerBridge.boot_transformers(
            source, dtype=torch_dtype, trust_remote_code=trust_remote_code, **placement
        )
    except InterpError:
        raise
    except Exception as error:
        raise _load_error(str(name_or_path), source, error) from error
    model.eval()
    model.cfg.model_name = label
    return model


def _placement(device, device_map, max_memory, n_devices, offload_folder) -> dict:
    """The bridge's placement arguments, checked: one device, or a device map over devices that exist."""
    split = device_map is not None or (n_devices is not None and n_devices != 1)
    if split and device is not None:
        raise InterpError(
            f"give either device={str(device)!r} or a device map / n_devices, not both: "
            "a device map places every layer itself."
        )
    if not split:
        if max_memory is not None or offload_folder is not None:
            raise InterpError(
                "max_memory and offload_folder only apply with device_map (or n_devices); "
                "pass device_map='auto' to use them."
            )
        return {"device": str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")}
    if n_devices is not None:
        if isinstance(n_devices, bool) or not isinstance(n_devices, int) or n_devices < 1:
            raise InterpError(f"n_devices must be a positive int, got {n_devices!r}.")
        if n_devices > torch.cuda.device_count():
            raise InterpError(
                f"n_devices={n_devices} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                "use at most that many, or device_map to mix CPU and disk."
            )
    if isinstance(device_map, dict):
        for module, target in device_map.items():
            _check_device(str(module), target, offload_folder)
    for target in max_memory or {}:
        _check_device("max_memory", target, offload_folder="")
    return {"device_map": device_map, "max_memory": max_memory, "n_devices": n_devices,
            "offload_folder": None if offload_folder is None else str(offload_folder)}  # fmt: skip


def _check_device(module: str, target, offload_folder) -> None:
    if target == "disk":
        if offload_folder is None:
            raise InterpError(f"the device map puts {module} on 'disk'; pass offload_folder=DIR for its weights.")
        return
    if target == "meta":
        raise InterpError(
            f"the device map puts {module} on 'meta', which holds no weights; map it to a device, 'cpu' or 'disk'."
        )
    try:
        resolved = torch.device(f"cuda:{target}" if isinstance(target, int) else str(target))
    except (RuntimeError, TypeError):
        raise InterpError(
            f"the device map puts {module} on {target!r}, which is not a device; use a GPU index, "
            "'cuda:N', 'cpu' or 'disk'."
        ) from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count()
        index = resolved.index or 0
        if index >= count:
            raise InterpError(
                f"the device map puts {module} on {resolved}, but this machine has {count} CUDA "
                f"device(s){'' if count else ' (none)'}; map it to one that exists, 'cpu' or 'disk'."
            )
    elif resolved.type != "cpu":
        raise InterpError(
            f"the device map puts {module} on {resolved}; interp supports CUDA devices, 'cpu' and 'disk'."
        )


@contextlib.contextmanager
def materialized(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, every weight of ``module`` that a device map offloaded (to the CPU or disk,
    left on the meta device between forwards) is loaded where its layer runs; the offload is restored after.

    For analyses that read weights directly (``W_O``, the unembedding) rather than through a forward.
    A module without offloaded weights is unchanged.
    """
    from accelerate.utils import align_module_device, has_offloaded_params

    with contextlib.ExitStack() as stack:
        for child in module.modules():
            if has_offloaded_params(child):
                stack.enter_context(align_module_device(child))
        yield module


def has_offloaded_weights(model: torch.nn.Module) -> bool:
    """Whether a device map offloaded some of ``model``'s weights (they sit on the meta device between forwards)."""
    return any(parameter.device.type == "meta" for parameter in model.parameters())


def model_id(model: TransformerBridge) -> str:
    """The name a model was loaded under (hub id, directory, or a registered ``name:VARIANT``)."""
    return str(getattr(model.cfg, "model_name", "unknown"))


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InterpError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(set(_DTYPES)))}.")
    return _DTYPES[dtype]


def _resolve_source(name: str) -> tuple[str, str]:
    """(what to pass to the loader, the label recorded in provenance)."""
    prefix, colon, _ = name.partition(":")
    if registered_model(prefix) is not None:
        return resolve_model(name)
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
    if colon and not looks_like_path and "\\" not in prefix:
        return resolve_model(name)  # "name:VARIANT" with no such name: the error lists the registered ones
    if looks_like_path:
        raise InterpError(f"no model directory at {name}. Check the path, or pass a hub id like 'gpt2'.")
    return name, name


def _load_error(name: str, source: str, error: Exception) -> InterpError:
    text = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    unreachable = any(
        word in text.lower()
        for word in (
            "connection",
            "offline",
            "resolve",
            "couldn't connect",
            "not a valid model identifier",
            "max retries",
            "name or service",
            "network",
            "repository not found",
            "does not appear",
        )
    )
    if Path(source).is_dir():
        return InterpError(f"could not load the model directory {name}: {text}")
    if unreachable or offline:
        return InterpError(
            f"cannot find model {name!r}{did_you_mean(name)}: it is not a local directory, and the Hugging Face hub "
            f"{'is disabled (HF_HUB_OFFLINE=1)' if offline else 'could not be reached or has no such model'} "
            f"({text}). Pass a local model directory, pre-download it with `huggingface-cli download {name}`, "
            f"or use a registered model ({', '.join(registered_models()) or 'none'})."
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
