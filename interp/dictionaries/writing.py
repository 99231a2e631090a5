"""Writing a dictionary in sparsify's or SAELens's directory format, with interp's record beside it (the formats are
described in ``interp.dictionaries.formats``, which reads them). Kept apart from the reader so that
``SparseDictionary.save`` can use it without the reader's import of the class."""

from pathlib import Path
from typing import Any

from torch import Tensor

from interp.errors import InterpError
from interp.io import atomic_write_json, atomic_write_safetensors
from interp.provenance import library_versions

FORMATS = ("sparsify", "saelens")
SPARSIFY_WEIGHTS, SAELENS_WEIGHTS, CONFIG, INTERP_FILE = (
    "sae.safetensors",
    "sae_weights.safetensors",
    "cfg.json",
    "interp_dictionary.json",
)
INTERP_TAG = "interp.dictionary"
SAELENS_ACTIVATIONS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}


def save_dictionary(dictionary: Any, directory: str | Path, format: str | None = None) -> Path:
    """Write ``dictionary`` to ``directory`` in ``format`` (default: sparsify's for TopK, else SAELens's)."""
    directory = Path(directory)
    format = format or ("sparsify" if dictionary.activation == "topk" else "saelens")
    if format not in FORMATS:
        raise InterpError(f"unknown dictionary format {format!r}; known: {', '.join(FORMATS)}.")
    tensors, config = (_to_sparsify if format == "sparsify" else _to_saelens)(dictionary)
    directory.mkdir(parents=True, exist_ok=True)
    weights = SPARSIFY_WEIGHTS if format == "sparsify" else SAELENS_WEIGHTS
    atomic_write_safetensors(
        directory / weights, {name: t.detach().float().contiguous() for name, t in tensors.items()}
    )
    atomic_write_json(directory / CONFIG, config)
    atomic_write_json(
        directory / INTERP_FILE,
        {
            "format": INTERP_TAG,
            "format_version": 1,
            "weights_format": format,
            "site": dictionary.site,
            "output_site": dictionary.output_site,
            "model_id": dictionary.model_id,
            "weights_hash": dictionary.weights_hash,
            "versions": library_versions(),
            **({"extra": dictionary.extra} if dictionary.extra else {}),
        },
    )
    return directory


def _to_sparsify(dictionary: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if dictionary.activation != "topk":
        raise InterpError(
            f"sparsify's format holds TopK dictionaries only, and this one is {dictionary.activation}; "
            "save it with format='saelens'."
        )
    if dictionary.d_out != dictionary.d_in:
        raise InterpError("sparsify's format needs a transcoder's output as wide as its input.")
    if dictionary.apply_b_dec_to_input == dictionary.is_transcoder:
        raise InterpError(
            "sparsify subtracts b_dec from an autoencoder's input and not from a transcoder's; this dictionary "
            "does the other, so save it with format='saelens'."
        )
    tensors = {
        "encoder.weight": dictionary.W_enc.T,
        "encoder.bias": dictionary.b_enc,
        "W_dec": dictionary.W_dec,
        "b_dec": dictionary.b_dec,
    }
    if dictionary.W_skip is not None:
        tensors["W_skip"] = dictionary.W_skip
    config = {
        "activation": "topk",
        "expansion_factor": max(1, dictionary.d_sae // dictionary.d_in),
        "normalize_decoder": not dictionary.is_transcoder,
        "num_latents": dictionary.d_sae,
        "k": dictionary.k,
        "multi_topk": False,
        "skip_connection": dictionary.W_skip is not None,
        "transcode": dictionary.is_transcoder,
        "d_in": dictionary.d_in,
    }
    return tensors, config


def _to_saelens(dictionary: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if dictionary.is_transcoder:
        raise InterpError("interp writes transcoders in sparsify's format only; save it with format='sparsify'.")
    architecture = {value: key for key, value in SAELENS_ACTIVATIONS.items()}[dictionary.activation]
    tensors = {
        "W_enc": dictionary.W_enc,
        "W_dec": dictionary.W_dec,
        "b_enc": dictionary.b_enc,
        "b_dec": dictionary.b_dec,
    }
    if dictionary.threshold is not None:
        tensors["threshold"] = dictionary.threshold
    config: dict[str, Any] = {
        "architecture": architecture,
        "d_in": dictionary.d_in,
        "d_sae": dictionary.d_sae,
        "apply_b_dec_to_input": dictionary.apply_b_dec_to_input,
        "normalize_activations": "none",
        "dtype": "float32",
        "device": "cpu",
        "metadata": {"model_name": dictionary.model_id, "hook_name": dictionary.site},
    }
    if dictionary.k is not None:
        config["k"] = dictionary.k
    return tensors, config
