"""Use a direction on a live model: project it out everywhere (hooks or weights), or add it at one layer.

- ``ablated(model, direction)``: hooks project the unit direction out of everything that writes
  to the residual stream (the embeddings, every attention output and every MLP output), so the
  stream never has a component along it (Arditi et al.'s directional ablation).
- ``orthogonalize(model, direction)``: the same as a weight edit: ``W_E``, (``W_pos``), every
  attention out projection and every MLP out projection (and their biases) lose their component
  along the direction. ``.restore()`` puts the original parameters back bit-exactly; with tied
  embeddings the unembedding keeps the original matrix (the tie is undone while orthogonalised).
- ``save_orthogonalized(model, direction, out)``: a new Hugging Face model directory with the
  orthogonalised weights (untied unembedding), loadable by ``interp.load_model(out)``.
- ``added(model, direction, layer, alpha)``: add ``alpha * vector`` to ``resid_pre`` of one layer at
  every position (activation addition).

All hooks act on every forward pass inside the ``with`` block, generation included.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp.errors import InterpError
from interp.io import atomic_write_json, atomic_write_safetensors
from interp.model import model_id
from interp.model.internals import hf_name, wrapped_module
from interp.pruning.weights import decoder_weights
from interp.sites import GLOBAL_SITES, site_name

ORTHOGONALIZATION_FILE = "orthogonalization.json"
_POST_NORMS = (
    "ln1_post",
    "ln2_post",
)  # Gemma-2-style norms after a sublayer: its output is not what reaches the stream


def direction_vector(model: Any, direction: Any) -> Float[Tensor, " d_model"]:
    """The direction's vector, checked against ``model``: a RefusalDirection (same model) or a ``[d_model]`` tensor."""
    vector = getattr(direction, "vector", direction)
    if not isinstance(vector, Tensor):
        raise InterpError(
            f"direction must be a RefusalDirection or a [d_model] tensor, got {type(direction).__name__}."
        )
    d_model = int(model.cfg.d_model)
    if vector.ndim != 1 or vector.shape[0] != d_model:
        provenance = getattr(direction, "provenance", None)
        found_on = (
            f"was found on model {provenance.model_id!r} and " if provenance is not None and provenance.model_id else ""
        )
        raise InterpError(f"the direction {found_on}has shape {tuple(vector.shape)}, "
                          f"but this model {model_id(model)!r} has d_model {d_model}; "
                          "use a direction found on this model (interp direction find --model M ...).")  # fmt: skip
    check = getattr(direction, "check_model", None)
    if check is not None:
        check(model)
    if not torch.isfinite(vector).all() or float(vector.norm()) == 0.0:
        raise InterpError("the direction is zero or not finite; find it again on prompts of two different classes.")
    return vector.detach()


def direction_basis(model: Any, direction: Any) -> Float[Tensor, "k d_model"]:
    """An orthonormal basis (float64) of one direction, or of the span of several (a refusal cone's directions).

    ``direction``: a RefusalDirection or ``[d_model]`` tensor; or a list of them, or a ``[k, d_model]`` tensor.
    """
    if isinstance(direction, (list, tuple)):
        vectors = [direction_vector(model, item) for item in direction]
    elif isinstance(direction, Tensor) and direction.ndim == 2:
        vectors = [direction_vector(model, row) for row in direction]
    else:
        vectors = [direction_vector(model, direction)]
    if not vectors:
        raise InterpError(
            "no direction given; pass a RefusalDirection, a [d_model] tensor, or a list of them (a subspace)."
        )
    stacked = torch.stack([vector.double() for vector in vectors])
    q, r = torch.linalg.qr(stacked.T)  # [d_model, k]: the span's orthonormal basis
    dependent = r.diagonal().abs() <= 1e-6 * stacked.norm(dim=1)
    if bool(dependent.any()):
        raise InterpError(f"direction {int(dependent.nonzero()[0])} of the {len(vectors)} given lies in the span of "
                          "the ones before it; give linearly independent directions.")  # fmt: skip
    return q.T.contiguous()


def ablation_sites(model: Any) -> list[str]:
    """The hook sites that write to the residual stream: embeddings, then attn_out and mlp_out of every layer."""
    names = [GLOBAL_SITES["embed"]] + ([GLOBAL_SITES["pos_embed"]] if _module(model, "pos_embed") is not None else [])
    for layer in range(int(model.cfg.n_layers)):
        names += [site_name("attn_out", layer), site_name("mlp_out", layer)]
    missing = [name for name in names if model.get_hook_point(name) is None]
    if missing:
        raise InterpError(
            f"the model has no hook sites {missing[:3]}; "
            "directional ablation needs a TransformerBridge (interp.load_model)."
        )
    return names


@contextmanager
def ablated(model: Any, direction: Any) -> Iterator[Any]:
    """Project the direction (or the span of several) out of the embeddings and every attention and MLP output.

    At all positions. ``direction``: a RefusalDirection or ``[d_model]`` tensor, or a list of them
    (``[k, d_model]``): the subspace they span is removed (several directions, a refusal cone).

    Example::

        with ablated(model, result.direction):
            logits = model(tokens)
    """
    basis = direction_basis(model, direction)

    def project_out(acts: Tensor, hook: Any = None) -> Tensor:
        b = basis.to(device=acts.device)  # in float64, as orthogonalize edits the weights: the two agree to rounding
        wide = acts.double()
        return (wide - (wide @ b.T) @ b).to(acts.dtype)

    with model.hooks(fwd_hooks=[(name, project_out) for name in ablation_sites(model)]):
        yield model


@contextmanager
def added(model: Any, direction: Any, layer: int | None = None, alpha: float = 1.0) -> Iterator[Any]:
    """Add ``alpha * vector`` (not normalised) to ``blocks.{layer}.hook_resid_pre`` at every position.

    ``layer`` defaults to the direction's own layer (a RefusalDirection knows it).
    """
    vector = direction_vector(model, direction)
    layer = getattr(direction, "layer", None) if layer is None else layer
    if layer is None or not 0 <= int(layer) < int(model.cfg.n_layers):
        raise InterpError(f"layer={layer!r}: give the layer to add the direction at, 0..{int(model.cfg.n_layers) - 1}.")

    def add(acts: Tensor, hook: Any = None) -> Tensor:
        return acts + alpha * vector.to(device=acts.device, dtype=acts.dtype)

    with model.hooks(fwd_hooks=[(site_name("resid_pre", int(layer)), add)]):
        yield model


# ---- weights --------------------------------------------------------------------------------------


@dataclass
class OrthogonalizedWeights:
    """The parameters ``orthogonalize`` replaced, so that ``restore()`` puts the very same tensors back."""

    saved: list[tuple[nn.Module, str, nn.Parameter]] = field(default_factory=list)  # (module, attribute, original)
    restored: bool = False

    def restore(self) -> None:
        """Put the original parameters back (reverse order), bit-exactly, ties included."""
        if self.restored:
            return
        for module, name, original in reversed(self.saved):
            setattr(module, name, original)
        self.restored = True


def _module(model: Any, name: str) -> nn.Module | None:
    bridge = getattr(model, name, None)
    inner = wrapped_module(bridge)
    return inner if isinstance(getattr(inner, "weight", None), Tensor) else None


def orthogonal_parameters(model: Any) -> list[tuple[nn.Module, str, str]]:
    """``(module, attribute, how)`` of every parameter the orthogonalisation edits; ``how`` is rows, cols or vector."""
    if any(hasattr(model.blocks[0], name) for name in _POST_NORMS):
        raise InterpError("this architecture normalises sublayer outputs before the residual stream "
                          "(post-sublayer norms), so weight orthogonalisation is not the same as directional "
                          "ablation; use ablated(model, direction) instead.")  # fmt: skip
    d_model = int(model.cfg.d_model)
    found = []
    for name in ("embed", "pos_embed"):
        module = _module(model, name)
        if module is not None:
            found.append((module, "weight", "rows"))  # [vocab or n_ctx, d_model]: each row is a vector in the stream
    for weight in decoder_weights(model):
        if (weight.component, weight.name) not in (("attn", "o"), ("mlp", "out")):
            continue
        if weight.shape[0] != d_model:
            raise InterpError(
                f"{weight.key} writes {weight.shape[0]} features, not d_model={d_model}; "
                "this architecture is not supported."
            )
        found.append(
            (weight.module, "weight", "rows" if weight.transposed else "cols")
        )  # Conv1D [d_in, d_model]; Linear [d_model, d_in]
        if getattr(weight.module, "bias", None) is not None:
            found.append((weight.module, "bias", "vector"))
    if not [entry for entry in found if entry[2] != "vector"][1:]:
        raise InterpError(
            "found no attention or MLP out projections to orthogonalise; load the model with interp.load_model(...)."
        )
    return found


def orthogonalize(model: Any, direction: Any) -> OrthogonalizedWeights:
    """Remove the direction (or the span of several) from W_E (W_pos), every attention and MLP out projection and their
    biases, in place.

    The weights stay edited until ``.restore()`` on the returned handle. Each edited parameter is
    replaced by a new one, so a tied unembedding keeps the original matrix.
    """
    basis = direction_basis(model, direction)
    targets = orthogonal_parameters(model)
    handle = OrthogonalizedWeights()
    try:
        with torch.no_grad():
            for module, name, how in targets:
                original = getattr(module, name)
                w, b = original.detach().double(), basis.to(original.device)
                if how == "cols":  # [d_model, d_in]: the columns live in the stream
                    edited = w - b.T @ (b @ w)
                else:  # rows [.., d_model] or a bias vector [d_model]
                    edited = w - (w @ b.T) @ b
                handle.saved.append((module, name, original))
                setattr(module, name, nn.Parameter(edited.to(original.dtype), requires_grad=original.requires_grad))
    except BaseException:
        handle.restore()
        raise
    return handle


@contextmanager
def orthogonalized(model: Any, direction: Any) -> Iterator[OrthogonalizedWeights]:
    """Context manager: the weights are orthogonalised inside the block and restored bit-exactly on exit."""
    handle = orthogonalize(model, direction)
    try:
        yield handle
    finally:
        handle.restore()


def hf_state_dict(model: Any) -> dict[str, Tensor]:
    """The wrapped Hugging Face model's parameters under its own names (the bridge's wrappers removed)."""
    hf = model.original_model
    with torch.device("meta"):
        fresh = type(hf)(hf.config)
    wanted = set(fresh.state_dict())
    state: dict[str, Tensor] = {}
    for key, tensor in hf.state_dict().items():
        clean = hf_name(key)
        if clean in wanted and clean not in state:
            state[clean] = tensor
    missing = sorted(wanted - set(state))
    if missing:
        raise InterpError(
            f"could not find the model's weights {missing[:3]} behind the bridge; "
            "save the model with transformers instead."
        )
    return state


def save_orthogonalized(model: Any, direction: Any, out: str | Path) -> Path:
    """Write a Hugging Face model directory whose weights are orthogonalised against ``direction``.

    The unembedding is saved untied (the original matrix), so the new model's logits equal the
    original model's under ``ablated``. ``model`` is left as it was. Returns ``out``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InterpError(f"{out} exists and is not empty; choose a new directory for the orthogonalised model.")
    hf = model.original_model
    several = direction if isinstance(direction, (list, tuple)) else [direction]
    described: list[dict[str, Any]] = [getattr(item, "describe", dict)() for item in several]
    record = {"direction": described[0] if len(described) == 1 else described,
              "source_model": str(getattr(model.cfg, "model_name", "")),
              "edited": "W_E (W_pos), attention out and MLP out projections and biases: W <- W - B^T B W "
                        "(B: the directions' orthonormal basis); unembedding untied and unchanged"}  # fmt: skip
    with orthogonalized(model, direction):
        state = {key: tensor.detach().cpu().contiguous() for key, tensor in hf_state_dict(model).items()}
    config = hf.config.to_dict()
    config["tie_word_embeddings"] = False
    for nested in ("text_config",):
        if isinstance(config.get(nested), dict):
            config[nested]["tie_word_embeddings"] = False
    config.pop("quantization_config", None)
    atomic_write_safetensors(out / "model.safetensors", state, {"format": "pt"})
    atomic_write_json(out / "config.json", config)
    if getattr(hf, "generation_config", None) is not None:
        hf.generation_config.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    atomic_write_json(out / ORTHOGONALIZATION_FILE, record)
    return out


def describe_saved(out: str | Path) -> dict:
    """The record ``save_orthogonalized`` wrote into a model directory."""
    path = Path(out) / ORTHOGONALIZATION_FILE
    if not path.is_file():
        raise InterpError(f"{out} holds no {ORTHOGONALIZATION_FILE}; it was not written by save_orthogonalized.")
    return json.loads(path.read_text(encoding="utf-8"))
