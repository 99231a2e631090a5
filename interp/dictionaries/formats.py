"""Dictionaries on disk, in the two formats the field shares, detected on load; interp adds one file beside them.

- **sparsify** (EleutherAI): a directory with ``cfg.json`` (``d_in``, ``num_latents``, ``k``, ``transcode``,
  ``skip_connection``, ...) and ``sae.safetensors`` (``encoder.weight [d_sae, d_in]``, ``encoder.bias``,
  ``W_dec [d_sae, d_in]``, ``b_dec``, optional ``W_skip [d_in, d_in]``). TopK only; an autoencoder subtracts
  ``b_dec`` from its input, a transcoder does not.
- **SAELens**: a directory with ``cfg.json`` (``architecture`` standard / topk / jumprelu, ``d_in``, ``d_sae``,
  ``apply_b_dec_to_input``, ``normalize_activations``, ``k``, ``metadata.model_name`` / ``metadata.hook_name``)
  and ``sae_weights.safetensors`` (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``, ``b_dec``,
  ``threshold`` for JumpReLU). Autoencoders only here.
- ``interp_dictionary.json`` beside either: the site(s), the model and its weights hash, and provenance
  (library versions). The other tools ignore it; a file without it loads with what its ``cfg.json`` says.

Nothing a file says is trusted: the JSON is checked key by key, the tensors' shapes against each other, and
a damaged safetensors file is one line naming it.
"""

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import Tensor

from interp.dictionaries.dictionary import SparseDictionary
from interp.dictionaries.writing import (
    CONFIG,
    INTERP_FILE,
    INTERP_TAG,
    SAELENS_ACTIVATIONS,
    SAELENS_WEIGHTS,
    SPARSIFY_WEIGHTS,
)
from interp.errors import InterpError

_MAX_JSON_BYTES = 1 << 20


def load_dictionary(directory: str | Path) -> SparseDictionary:
    """Read a dictionary saved by interp, sparsify or SAELens (the format is detected from the files)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InterpError(f"no dictionary directory at {directory}; pass the directory holding cfg.json.")
    if (directory / SPARSIFY_WEIGHTS).is_file():
        dictionary = _from_sparsify(directory)
    elif (directory / SAELENS_WEIGHTS).is_file():
        dictionary = _from_saelens(directory)
    else:
        inside = sorted(path.name for path in directory.iterdir() if (path / CONFIG).is_file())
        listed = ", ".join(inside[:4]) + (", ..." if len(inside) > 4 else "")
        hint = f" It holds dictionaries for several hook points ({listed}): load one of them." if inside else ""
        raise InterpError(
            f"{directory} holds no dictionary: expected cfg.json with {SPARSIFY_WEIGHTS} (sparsify, interp) or "
            f"{SAELENS_WEIGHTS} (SAELens).{hint}"
        )
    return _with_interp_record(dictionary, directory)


# ---- sparsify ---------------------------------------------------------------------------------------------


def _from_sparsify(directory: Path) -> SparseDictionary:
    config = _read_config(directory)
    activation = _get(config, "activation", str, directory, default="topk")
    if activation != "topk":
        raise InterpError(f"{directory / CONFIG}: activation {activation!r} is not supported (interp reads topk).")
    d_in, k = _get(config, "d_in", int, directory), _get(config, "k", int, directory)
    transcode = _get(config, "transcode", bool, directory, default=False)
    tensors = _read_tensors(directory / SPARSIFY_WEIGHTS, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"))
    encoder = tensors["encoder.weight"]
    if encoder.ndim != 2 or encoder.shape[1] != d_in:
        raise InterpError(
            f"{directory / SPARSIFY_WEIGHTS}: encoder.weight has shape {tuple(encoder.shape)}, but cfg.json says "
            f"d_in = {d_in}; the files do not belong together."
        )
    return _build(
        directory,
        W_enc=encoder.T.contiguous(),
        b_enc=tensors["encoder.bias"],
        W_dec=tensors["W_dec"],
        b_dec=tensors["b_dec"],
        activation="topk",
        k=k,
        W_skip=tensors.get("W_skip"),
        apply_b_dec_to_input=not transcode,
        extra={"sparsify_cfg": config},
    )


# ---- SAELens ----------------------------------------------------------------------------------------------


def _from_saelens(directory: Path) -> SparseDictionary:
    config = _read_config(directory)
    architecture = _get(config, "architecture", str, directory, default="standard")
    if architecture not in SAELENS_ACTIVATIONS:
        raise InterpError(
            f"{directory / CONFIG}: architecture {architecture!r} is not supported "
            f"(interp reads {', '.join(SAELENS_ACTIVATIONS)})."
        )
    normalize = config.get("normalize_activations", "none")
    if normalize not in ("none", None):
        raise InterpError(
            f"{directory / CONFIG}: normalize_activations = {normalize!r} scales the input by a factor the file does "
            "not hold; interp reads dictionaries trained on unnormalised activations ('none')."
        )
    names = ("W_enc", "W_dec", "b_enc", "b_dec") + (("threshold",) if architecture == "jumprelu" else ())
    tensors = _read_tensors(directory / SAELENS_WEIGHTS, names)
    found = config.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    site = metadata.get("hook_name", config.get("hook_name", ""))
    model_name = metadata.get("model_name", config.get("model_name", ""))
    d_in, d_sae = _get(config, "d_in", int, directory), _get(config, "d_sae", int, directory)
    if tuple(tensors["W_enc"].shape) != (d_in, d_sae):
        raise InterpError(
            f"{directory / SAELENS_WEIGHTS}: W_enc has shape {tuple(tensors['W_enc'].shape)}, but cfg.json says "
            f"d_in x d_sae = {d_in} x {d_sae}; the files do not belong together."
        )
    return _build(
        directory,
        W_enc=tensors["W_enc"],
        b_enc=tensors["b_enc"],
        W_dec=tensors["W_dec"],
        b_dec=tensors["b_dec"],
        activation=SAELENS_ACTIVATIONS[architecture],
        k=_get(config, "k", int, directory) if architecture == "topk" else None,
        threshold=tensors.get("threshold"),
        apply_b_dec_to_input=_get(config, "apply_b_dec_to_input", bool, directory, default=True),
        site=site if isinstance(site, str) else "",
        model_id=model_name if isinstance(model_name, str) else "",
        extra={"saelens_cfg": config},
    )


# ---- shared -----------------------------------------------------------------------------------------------


def _build(directory: Path, **fields: Any) -> SparseDictionary:
    try:
        return SparseDictionary(**fields)
    except InterpError as error:
        raise InterpError(f"{directory} is not a consistent dictionary: {error}") from None


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG
    if not path.is_file():
        raise InterpError(f"{directory} has weights but no {CONFIG}; the dictionary is incomplete.")
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise InterpError(f"{path} is {path.stat().st_size} bytes, too large for a dictionary's config.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InterpError(f"{path} is not valid JSON ({type(error).__name__}); the dictionary is damaged.") from None
    if not isinstance(config, dict):
        raise InterpError(f"{path} holds a JSON {type(config).__name__}, not a dictionary's config (a table).")
    return config


def _get(config: dict[str, Any], key: str, kind: type, directory: Path, default: Any = ...) -> Any:
    value = config.get(key, default)
    if value is ...:
        raise InterpError(f"{directory / CONFIG} lacks {key!r}; the dictionary's config is incomplete.")
    if value is None and default is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InterpError(f"{directory / CONFIG}: {key!r} must be {kind.__name__}, got {value!r:.60}.")
    return value


def _read_tensors(path: Path, required: tuple[str, ...]) -> dict[str, Tensor]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            missing = [name for name in required if name not in names]
            if missing:
                raise InterpError(f"{path} lacks the tensors {', '.join(missing)}; the dictionary is damaged.")
            return {name: handle.get_tensor(name).float() for name in names}
    except SafetensorError as error:
        raise InterpError(f"{path} is not a readable safetensors file ({error}); the dictionary is damaged.") from None


def _with_interp_record(dictionary: SparseDictionary, directory: Path) -> SparseDictionary:
    path = directory / INTERP_FILE
    if not path.is_file():
        return dictionary
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.stat().st_size <= _MAX_JSON_BYTES else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        record = None
    if not isinstance(record, dict) or record.get("format") != INTERP_TAG:
        raise InterpError(
            f"{path} is not interp's record of a dictionary (damaged or edited); delete it or save again."
        )
    changes: dict[str, Any] = {}
    for key in ("site", "output_site", "model_id", "weights_hash"):
        value = record.get(key, "")
        if not isinstance(value, str):
            raise InterpError(f"{path}: {key!r} must be text, got {value!r:.60}.")
        if value:
            changes[key] = value
    if isinstance(record.get("extra"), dict):
        changes["extra"] = {**dictionary.extra, **record["extra"]}
    return dictionary.with_provenance(**changes)


load = load_dictionary  # interp.dictionaries.load(dir): any of the three formats, detected
