"""Importance of each decoder-layer weight for producing given responses: SNIP, signed SNIP, Wanda.

With L_i the mean cross-entropy over the response tokens of example i (prompt tokens masked)
and N examples:

- ``snip``: S = |W| * sum_i |dL_i/dW|  (Wei et al. 2024);
- ``signed_snip``: S = -W * mean_i dL_i/dW = W * d(mean log-likelihood)/dW, the first-order
  estimate of how much the loss rises when the weight is zeroed; large positive scores mark the
  weights that most help produce the responses (the variant of Orgad et al. 2026);
- ``wanda``: S_jk = |W_jk| * ||X_k||_2, X the input of the layer over all response tokens
  (the tokens that are part of a response, as in Wei et al.'s calibration).

Scores of all layers come from one forward and one backward per batch: per-example gradients are
rebuilt from each linear layer's input X and output gradient G as G_i^T X_i, so the per-example
absolute value of SNIP needs no per-example backward. Each G_i^T X_i is one matrix product over
that example's own tokens (no padding) into a reused buffer, taken in place to its absolute value
and added: the matrix stays in cache, so this step runs at the machine's matmul rate. The forward
stops after the last block: the final norm and unembedding (``interp.store.readout.Readout``, checked
against the model's logits) run at the response positions only, where the loss is (the provenance
records which ran as ``loss_logits``).
Everything accumulates in float32.

>>> scores = importance_scores(model, harmful_pairs, method="signed_snip")   # doctest: +SKIP
>>> scores.save("harm.safetensors"); ImportanceScores.load("harm.safetensors")  # doctest: +SKIP
"""

import contextlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import einsum, rearrange
from jaxtyping import Float
from torch import Tensor

from interp import defaults
from interp.checks import check_number
from interp.errors import InterpError
from interp.io import LazyTensors, ResultFormat, read_result, write_result
from interp.model import model_id
from interp.model.weights import weights_hash
from interp.progress import tqdm
from interp.provenance import Provenance
from interp.pruning.pairs import (
    Records,
    ResponseBatch,
    batch_bounds,
    iter_response_batches,
    pairs_hash,
    response_nll,
    response_nll_at_targets,
    response_pairs,
    tokenize_pairs,
)
from interp.pruning.weights import DecoderWeight, decoder_weights
from interp.sites import site_name
from interp.store.readout import Readout, largest_magnitude

METHODS = defaults.PRUNE_METHODS


def _scores_v1_to_v2(meta: dict[str, Any]) -> dict[str, Any]:
    """Importance scores, version 1 (tag "interp-importance-scores"): a few provenance fields as separate strings."""
    fields = {key: meta.pop(key, "") for key in ("model_id", "weights_hash", "dataset_hash", "interp_version")}
    fields["versions"] = json.loads(meta.pop("versions", "{}"))
    return meta | {"provenance": json.dumps(fields)}


FORMAT = ResultFormat(
    kind="importance_scores",
    version=2,
    name="importance-scores file",
    meta_file="",
    tensors_file="scores.safetensors",
    create="importance_scores(model, pairs).save(PATH) (`interp prune ... --out DIR` writes DIR/scores/)",
    load="ImportanceScores.load(PATH)",
    aliases={"interp-importance-scores": 1},
    migrations={1: _scores_v1_to_v2},
)


def tensor_shape(tensors: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    """The shape of ``tensors[key]`` without reading it when the mapping is lazy."""
    return tensors.shape(key) if isinstance(tensors, LazyTensors) else tuple(tensors[key].shape)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InterpError(f"unknown scoring method {method!r}; use one of {', '.join(METHODS)}.")
    return method


@dataclass(frozen=True)
class ImportanceScores:
    """One score per decoder-layer weight, keyed like ``decoder_weights`` (``blocks.0.attn.q``, ...).

    Each tensor is ``[d_out, d_in]`` (the ``nn.Linear`` layout). ``provenance.dataset_hash`` is the hash
    of the (prompt, response) texts the scores were computed on.
    """

    scores: Mapping[str, Float[Tensor, "d_out d_in"]]
    method: str
    provenance: Provenance
    n_samples: int
    n_tokens: int

    def __post_init__(self) -> None:
        check_method(self.method)
        if not self.scores:
            raise InterpError("importance scores need at least one weight matrix.")
        for key in self.scores:
            if len(tensor_shape(self.scores, key)) != 2:
                raise InterpError(
                    f"the score of {key} has shape {tensor_shape(self.scores, key)}; scores are 2-D [d_out, d_in]."
                )
        if self.n_samples < 1 or self.n_tokens < 1:
            raise InterpError(
                f"scores need at least one example and one response token (got {self.n_samples} and {self.n_tokens})."
            )

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.scores)

    def __getitem__(self, key: str) -> Float[Tensor, "d_out d_in"]:
        return self.scores[key]

    def shape(self, key: str) -> tuple[int, int]:
        return tensor_shape(self.scores, key)  # type: ignore[return-value]

    @property
    def numel(self) -> int:
        return sum(math.prod(self.shape(key)) for key in self.keys)

    def check_model(self, model) -> None:
        """Raise unless ``model`` has exactly these decoder weights with these shapes; warn if its weights differ."""
        check_keys_match(self.keys, {key: self.shape(key) for key in self.keys}, model, what=f"{self.method} scores")
        found = weights_hash(model)
        if self.provenance.weights_hash and found != self.provenance.weights_hash:
            warnings.warn(
                f"these {self.method} scores were computed on {self.provenance.model_id} (weights "
                f"{self.provenance.weights_hash[:12]}), but this model's weights are {found[:12]}.",
                stacklevel=2,
            )

    def save(self, path: str | Path) -> Path:
        """Write one safetensors file (a directory gets ``scores.safetensors``); returns its path."""
        meta = {"method": self.method, "n_samples": str(self.n_samples), "n_tokens": str(self.n_tokens)}
        return write_result(
            path, FORMAT, meta, provenance=self.provenance, tensors={key: self.scores[key].float() for key in self.keys}
        )

    @classmethod
    def load(cls, path: str | Path, model=None) -> "ImportanceScores":
        """Open saved scores (tensors are read lazily); with ``model``, check that they fit it."""
        saved = read_result(path, FORMAT)
        assert saved.tensors is not None  # a single-file format always has its tensors
        scores = cls(
            scores=saved.tensors,
            method=saved.meta["method"],
            provenance=saved.provenance or Provenance(model_id="", weights_hash=""),
            n_samples=int(saved.meta["n_samples"]),
            n_tokens=int(saved.meta["n_tokens"]),
        )
        if model is not None:
            scores.check_model(model)
        return scores

    def figure(self):
        """Mean score per layer and module (a heatmap)."""
        from interp.plots import layer_module_heatmap

        layers, modules, values = layer_module_grid({key: float(self.scores[key].float().mean()) for key in self.keys})
        return layer_module_heatmap(
            values,
            layers,
            modules,
            title=f"Mean {self.method} score per weight matrix ({self.n_samples} examples)",
            colorbar_title="mean score",
        )


def layer_module_grid(values: Mapping[str, float]) -> tuple[list[int], list[str], np.ndarray]:
    """Arrange ``{"blocks.L.component.name": value}`` as a [layer, module] array (NaN where absent)."""
    cells: dict[tuple[int, str], float] = {}
    for key, value in values.items():
        parts = key.split(".")
        if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
            continue
        cells[(int(parts[1]), ".".join(parts[2:]))] = value
    layers = sorted({layer for layer, _ in cells})
    modules = list(dict.fromkeys(module for _, module in sorted(cells, key=lambda cell: (cell[0],))))
    grid = np.full((len(layers), len(modules)), np.nan)
    for (layer, module), value in cells.items():
        grid[layers.index(layer), modules.index(module)] = value
    return layers, modules, grid


def check_keys_match(keys: Sequence[str], shapes: Mapping[str, tuple[int, ...]], model, what: str) -> None:
    """Raise unless ``keys``/``shapes`` are exactly the model's decoder weights."""
    table = {weight.key: weight for weight in decoder_weights(model)}
    missing = [key for key in keys if key not in table]
    if missing:
        raise InterpError(
            f"{what} name {len(missing)} weights this model does not have (first: {missing[0]!r}; the model has e.g. "
            f"{next(iter(table))!r}). They were made for a different architecture; recompute them for this model."
        )
    for key in keys:
        if tuple(shapes[key]) != table[key].shape:
            raise InterpError(
                f"{what}: {key} has shape {tuple(shapes[key])} but the model's weight is {table[key].shape}; "
                "they were made for a different model size. Recompute them for this model."
            )


# ---- computation ---------------------------------------------------------------------------


class _Recorder:
    """Forward hooks on the decoder linears: keep inputs/outputs (SNIP) or sum squared inputs (Wanda)."""

    def __init__(self, weights: Sequence[DecoderWeight], mode: str):
        self.weights = weights
        self.mode = mode
        self.inputs: dict[str, list[Tensor]] = {}
        self.outputs: dict[str, list[Tensor]] = {}
        self.squares = (
            {w.key: torch.zeros(w.shape[1], dtype=torch.float32, device=w.parameter.device) for w in weights}
            if mode == "wanda"
            else {}
        )
        self.response_mask: Tensor | None = None
        self.handles = [w.module.register_forward_hook(self._hook(w.key)) for w in weights]

    def _hook(self, key: str):
        def hook(module, args, output) -> None:
            x = args[0]
            mask = self.response_mask
            if x.dim() != 3 or mask is None or tuple(x.shape[:2]) != tuple(mask.shape):
                raise InterpError(
                    f"the input of {key} has shape {tuple(x.shape)}, not [batch, pos, d_in] matching the batch "
                    f"{tuple(mask.shape) if mask is not None else '?'}; "
                    "per-token inputs are needed to score this weight."
                )
            if self.mode == "wanda":
                rows = x[mask.to(x.device)].float()
                self.squares[key] += (rows * rows).sum(0)
            else:
                self.inputs.setdefault(key, []).append(x.detach())
                self.outputs.setdefault(key, []).append(output)

        return hook

    def clear(self) -> None:
        self.inputs.clear()
        self.outputs.clear()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def importance_scores(
    model,
    dataset: Records,
    method: str = defaults.PRUNE_METHOD,
    batch_size: int = defaults.PRUNE_BATCH_SIZE,
    n_samples: int | None = None,
    progress: bool = True,
) -> ImportanceScores:
    """Score every decoder-layer weight for producing the responses of ``dataset``.

    Args:
        model: a ``TransformerBridge`` (``interp.load_model``).
        dataset: records with a prompt (``"prompt"`` or ``"text"``) and a ``"response"``.
        method: ``"snip"``, ``"signed_snip"`` or ``"wanda"`` (see the module docstring).
        batch_size: examples per forward/backward pass; on the CPU a pass also holds at most
            ``defaults.PRUNE_CPU_PASS_ELEMENTS`` / (widest linear output) tokens (recorded in the provenance as
            ``max_tokens_per_pass``). The result does not depend on either.
        n_samples: use only the first ``n_samples`` examples (the reference uses 128).

    >>> pairs = [{"text": "how do i bake bread ?", "response": "mix flour ."}]
    >>> scores = importance_scores(model, pairs)  # doctest: +SKIP
    >>> scores["blocks.0.mlp.out"].shape  # doctest: +SKIP
    torch.Size([32, 128])
    """
    check_method(method)
    check_number("batch_size", batch_size)
    pairs = response_pairs(dataset)
    if n_samples is not None:
        if n_samples < 1:
            raise InterpError(f"n_samples must be at least 1, got {n_samples}.")
        pairs = pairs[:n_samples]
    weights = decoder_weights(model)
    tokenized = tokenize_pairs(model, pairs)
    readout = _checked_readout(model) if method != "wanda" else None
    loss_logits = "response positions (readout)" if readout is not None else "every position (the model's forward)"
    extra: dict[str, Any] = {"method": method} if method == "wanda" else {"method": method, "loss_logits": loss_logits}
    max_tokens = _cpu_tokens_per_pass(weights) if method != "wanda" and _device(model).type == "cpu" else None
    if max_tokens is not None:
        extra["max_tokens_per_pass"] = max_tokens
    provenance = Provenance(
        model_id=model_id(model), weights_hash=weights_hash(model), dataset_hash=pairs_hash(pairs), extra=extra
    )
    accumulated = {w.key: torch.zeros(w.shape, dtype=torch.float32, device=w.parameter.device) for w in weights}
    recorder = _Recorder(weights, "wanda" if method == "wanda" else "gradient")
    was_training = model.training
    grad_flags = [(w.parameter, w.parameter.requires_grad) for w in weights]
    n_tokens = 0
    n_batches = len(batch_bounds([len(item.tokens) for item in tokenized], batch_size, max_tokens))
    batches = iter_response_batches(model, tokenized, batch_size, max_tokens)
    try:
        model.eval()
        for parameter, _ in grad_flags:
            parameter.requires_grad_(True)  # so the graph reaches every linear output
        for batch in tqdm(batches, total=n_batches, desc=f"{method} scores", disable=not progress):
            recorder.response_mask = batch.response_mask
            n_tokens += int(batch.response_mask.sum())
            if method == "wanda":
                with torch.no_grad():
                    _last_residual(model, batch)  # the recorder's hooks see every linear input
                continue
            with torch.enable_grad():
                loss = _response_loss(model, readout, batch)
                lengths = batch.attention_mask.sum(1).tolist()  # right-padded: each example's own tokens come first
                _accumulate_gradients(loss, weights, recorder, accumulated, lengths, signed=method == "signed_snip")
            recorder.clear()
    finally:
        recorder.remove()
        for parameter, flag in grad_flags:
            parameter.requires_grad_(flag)
        model.train(was_training)

    scores: dict[str, Tensor] = {}
    for weight in weights:
        value = weight.weight.detach().float()
        if method == "snip":
            scores[weight.key] = value.abs() * accumulated[weight.key]
        elif method == "signed_snip":
            scores[weight.key] = -value * accumulated[weight.key] / len(tokenized)
        else:
            scores[weight.key] = value.abs() * recorder.squares[weight.key].sqrt()[None, :]
    return ImportanceScores(scores, method, provenance, n_samples=len(tokenized), n_tokens=n_tokens)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _cpu_tokens_per_pass(weights: Sequence[DecoderWeight]) -> int:
    """The most tokens one forward/backward on the CPU should hold: ``defaults.PRUNE_CPU_PASS_ELEMENTS`` over the
    widest linear output. Larger passes are slower per token on the CPU, not faster: their activations leave the
    cache and the allocator returns their memory to the system after each pass, so the next one faults it back in
    (GPT-2-small shape, 16 examples of ~95 tokens: 1.16 M page faults and 17.2 s in one pass, 12.2-12.4 s in
    passes of at most 512 tokens). The scores do not depend on it."""
    widest = max(weight.shape[0] for weight in weights)
    return max(1, defaults.PRUNE_CPU_PASS_ELEMENTS // widest)


# how closely the readout must reproduce the model's logits to replace the full forward's unembedding
_READOUT_TOLERANCE = 1e-4


def _checked_readout(model) -> Readout | None:
    """The model's final norm + unembedding as a ``Readout`` when it reproduces the logits (else None, with a
    warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        readout = Readout.from_model(model)
    if readout.verified_max_abs_diff <= _READOUT_TOLERANCE * max(1.0, largest_magnitude(readout.W_U)):
        return readout
    warnings.warn(
        f"the final norm and unembedding of {type(model.ln_final).__name__} are reproduced only to "
        f"{readout.verified_max_abs_diff:.2e}; scoring unembeds every position with the model's own forward "
        "instead (slower, same scores).",
        stacklevel=3,
    )
    return None


class _PastLastBlock(Exception):
    """Raised after the last block: the final norm and unembedding of every position are not needed."""


def _last_residual(model, batch: ResponseBatch) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream after the last block (with its graph when gradients are on); the forward stops there."""
    kept: list[Tensor] = []

    def keep(tensor: Tensor, hook) -> None:
        kept.append(tensor)
        raise _PastLastBlock

    device = _device(model)
    hooks = [(site_name("resid_post", model.cfg.n_layers - 1), keep)]
    with model.hooks(fwd_hooks=hooks), contextlib.suppress(_PastLastBlock):
        model(batch.tokens.to(device), attention_mask=batch.attention_mask.to(device), return_type=None)
    if not kept:
        raise InterpError(
            f"{site_name('resid_post', model.cfg.n_layers - 1)} never fired for this model; it cannot be scored."
        )
    return kept[0]


def _response_loss(model, readout: Readout | None, batch: ResponseBatch) -> Float[Tensor, ""]:
    """The sum over examples of each example's mean response cross-entropy (what the scores differentiate)."""
    if readout is None:
        logits = model(batch.tokens.to(_device(model)), attention_mask=batch.attention_mask.to(_device(model)))
        summed, counts = response_nll(logits, batch)
    else:
        resid = _last_residual(model, batch)
        summed, counts = response_nll_at_targets(readout(resid[:, :-1][batch.target_mask.to(resid.device)]), batch)
    return (summed / counts.clamp(min=1)).sum()


def _accumulate_gradients(
    loss: Tensor,
    weights: Sequence[DecoderWeight],
    recorder: _Recorder,
    accumulated: dict[str, Tensor],
    lengths: Sequence[int],
    signed: bool,
) -> None:
    """Add each example's weight gradient G_i^T X_i (signed) or its absolute value to ``accumulated``."""
    keys = [w.key for w in weights if w.key in recorder.outputs]
    outputs = [out for key in keys for out in recorder.outputs[key]]
    grads = torch.autograd.grad(loss, outputs, allow_unused=True)
    cursor = 0
    buffer = None
    for key in keys:
        n_calls = len(recorder.outputs[key])
        calls = list(zip(recorder.inputs[key], recorder.outputs[key], grads[cursor : cursor + n_calls]))
        cursor += n_calls
        x = torch.cat([inp for inp, _, _ in calls], dim=1).float()
        g = torch.cat([grad if grad is not None else torch.zeros_like(out) for _, out, grad in calls], dim=1).float()
        if signed:
            accumulated[key] += einsum(g, x, "batch pos d_out, batch pos d_in -> d_out d_in")
            continue
        total = accumulated[key]
        if buffer is None or buffer.numel() < total.numel():
            buffer = torch.empty(total.numel(), dtype=torch.float32, device=total.device)
        gradient = buffer[: total.numel()].view(total.shape)
        g_by_row = rearrange(g, "batch pos d_out -> batch d_out pos")
        for example, length in enumerate(lengths):
            # right padding: G is zero after the example's own tokens, so they can be left out (one call per forward)
            own = slice(0, length) if n_calls == 1 else slice(None)
            torch.mm(g_by_row[example, :, own], x[example, own], out=gradient)
            total += gradient.abs_()


def flatten_scores(scores: Mapping[str, Tensor], keys: Sequence[str]) -> Float[Tensor, " n"]:
    """All scores of ``keys`` as one vector (row-major per matrix, in key order)."""
    return torch.cat([rearrange(scores[key].float(), "d_out d_in -> (d_out d_in)") for key in keys])
