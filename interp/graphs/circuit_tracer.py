"""Transcoder sets in circuit-tracer's format: a YAML file naming the model, the hooks and one file per layer.

    model_name: meta-llama/Llama-3.2-1B
    feature_input_hook: mlp.hook_in
    feature_output_hook: mlp.hook_out
    transcoders:
      - {id: layer_0, layer: 0, filepath: layer_0.safetensors}     # relative to the YAML file, absolute, or hf://

The per-layer files:

- **safetensors** (circuit-tracer's ReLU transcoders): ``W_enc [d_sae, d_model]``, ``W_dec [d_model, d_sae]`` (both
  transposed on load, as circuit-tracer does), ``b_enc [d_sae]``, ``b_dec [d_model]``, optional
  ``W_skip [d_model, d_model]``;
- **npz** (Gemma Scope's JumpReLU transcoders): ``W_enc [d_model, d_sae]``, ``W_dec [d_sae, d_model]``, ``b_enc``,
  ``b_dec``, ``threshold [d_sae]``.

Either way ``codes = act(x W_enc + b_enc)`` (``b_dec`` is not subtracted from the input) and the prediction is
``codes W_dec + b_dec + x W_skip^T``: exactly ``SparseDictionary`` with ``apply_b_dec_to_input=False``. The hooks
must be the MLP's input (``mlp.hook_in`` or ``ln2.hook_normalized``) and output (``mlp.hook_out`` or ``hook_mlp_out``),
which attribution graphs read as ``blocks.L.ln2.hook_normalized`` and ``blocks.L.hook_mlp_out``; any other hook is
refused. ``hf://REPO/FILE`` paths are downloaded with ``huggingface_hub`` (and cached there).
"""

from pathlib import Path
from typing import Any

import torch

from interp.dictionaries.dictionary import SparseDictionary
from interp.errors import InterpError

INPUT_HOOKS = ("mlp.hook_in", "ln2.hook_normalized")
OUTPUT_HOOKS = ("mlp.hook_out", "hook_mlp_out")
_MAX_YAML_BYTES = 1 << 20


def is_circuit_tracer_config(path: Path) -> bool:
    return path.is_file() and path.suffix in (".yaml", ".yml")


def read_circuit_tracer_set(config_path: Path) -> dict[int, tuple[Path, SparseDictionary]]:
    """``{layer: (file, transcoder)}`` of the set ``config_path`` describes (see the module docstring)."""
    import yaml

    if config_path.stat().st_size > _MAX_YAML_BYTES:
        raise InterpError(f"{config_path} is over 1 MiB; a circuit-tracer transcoder config is a short YAML file.")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InterpError(f"{config_path} is not readable YAML ({type(error).__name__}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("transcoders"), list) or not config["transcoders"]:
        raise InterpError(f"{config_path} names no transcoders: expected a 'transcoders' list of layer / filepath.")
    for key, allowed in (("feature_input_hook", INPUT_HOOKS), ("feature_output_hook", OUTPUT_HOOKS)):
        if config.get(key) not in allowed:
            raise InterpError(
                f"{config_path}: {key} is {config.get(key)!r}; attribution graphs here read transcoders of the MLP "
                f"({' or '.join(INPUT_HOOKS)} -> {' or '.join(OUTPUT_HOOKS)})."
            )
    model = config.get("model_name", "")
    found: dict[int, tuple[Path, SparseDictionary]] = {}
    for entry in config["transcoders"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("layer"), int) or isinstance(entry["layer"], bool):
            raise InterpError(
                f"{config_path}: each transcoder needs an integer 'layer' and a 'filepath', got {entry!r}."
            )
        layer, filepath = entry["layer"], entry.get("filepath")
        if not isinstance(filepath, str) or not filepath:
            raise InterpError(f"{config_path}: the transcoder of layer {layer} has no 'filepath'.")
        if layer in found:
            raise InterpError(f"{config_path} names two transcoders for layer {layer}; keep one per layer.")
        path = _local(filepath, config_path.parent)
        found[layer] = (path, _transcoder(path, layer, str(model) if model else ""))
    return found


def _local(filepath: str, base: Path) -> Path:
    if filepath.startswith("hf://"):
        from huggingface_hub import hf_hub_download

        owner, _, rest = filepath[len("hf://") :].partition("/")
        name, _, filename = rest.partition("/")  # hf://OWNER/NAME/FILE
        return Path(hf_hub_download(repo_id=f"{owner}/{name}", filename=filename))
    path = Path(filepath)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise InterpError(f"no transcoder file at {path}; the config's filepath must name an existing file.")
    return path


def _transcoder(path: Path, layer: int, model: str) -> SparseDictionary:
    tensors = _read(path)
    if "threshold" in tensors:  # Gemma Scope: W_enc [d_model, d_sae], W_dec [d_sae, d_model], JumpReLU
        fields: dict[str, Any] = {"W_enc": tensors["W_enc"], "W_dec": tensors["W_dec"], "activation": "jumprelu",
                                  "threshold": tensors["threshold"]}  # fmt: skip
    else:  # circuit-tracer's ReLU transcoders store both matrices transposed
        fields = {
            "W_enc": tensors["W_enc"].T.contiguous(),
            "W_dec": tensors["W_dec"].T.contiguous(),
            "activation": "relu",
        }
    try:
        return SparseDictionary(
            **fields,
            b_enc=tensors["b_enc"],
            b_dec=tensors["b_dec"],
            W_skip=tensors.get("W_skip"),
            apply_b_dec_to_input=False,
            site=f"blocks.{layer}.ln2.hook_normalized",
            output_site=f"blocks.{layer}.hook_mlp_out",
            model_id=model,
            extra={"format": "circuit-tracer", "file": path.name},
        )
    except InterpError as error:
        raise InterpError(f"{path}: {error}") from None


def _read(path: Path) -> dict[str, torch.Tensor]:
    required = ("W_enc", "W_dec", "b_enc", "b_dec")
    try:
        if path.suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as arrays:
                tensors = {name: torch.from_numpy(np.array(arrays[name], dtype=np.float32)) for name in arrays.files}
        else:
            from safetensors.torch import load_file

            tensors = {name: value.float() for name, value in load_file(str(path)).items()}
    except Exception as error:  # a damaged file: one line naming it, not the reader's traceback
        raise InterpError(f"{path} is not a readable transcoder file ({type(error).__name__}).") from None
    missing = [name for name in required if name not in tensors]
    if missing:
        raise InterpError(
            f"{path} has no {', '.join(missing)}; a circuit-tracer transcoder holds {', '.join(required)}."
        )
    return tensors
