"""The frozen local replacement model of one prompt: the map from node contributions to targets, made linear.

One real forward of the model on the prompt records what is frozen:

- every attention pattern ``P[layer, head, q, k]`` (``blocks.L.attn.hook_pattern``);
- every norm's scale, computed from the norm's input in the real run with the norm's own formula:
  ``sqrt(var(x) + eps)`` (LayerNorm) or ``sqrt(mean(x²) + eps)`` (RMSNorm) — ``ln1``, ``ln2``, Gemma 2's
  ``ln1_post``/``ln2_post`` and the final norm;
- each layer's transcoder codes ``c[L, pos, f]`` on the real ``blocks.L.ln2.hook_normalized``, and its error
  ``e[L, pos] = mlp_out − transcoder(ln2_normalized)`` (the transcoder's output includes ``b_dec`` and the skip term);
- the token vectors ``t[pos] = blocks.0.hook_resid_pre`` (the token embedding, Gemma's √d scaling and a learned
  positional embedding included).

The frozen forward then recomputes the residual stream from the weights with these constants (rotary embeddings,
queries and keys only shape the frozen patterns, so they do not appear)::

    r_0 = t (+ injection at the embedding)
    norm(x) = centre(x) / s · (w + offset) + b          (s frozen; centre only for LayerNorm)
    attn_L  = Σ_h (P[L, h] @ (norm_ln1(r) W_V[kv(h)] + b_V)) W_O[h] + b_O      (then the frozen ln1_post, Gemma 2)
    mlp_L   = c[L] W_dec + b_dec + e[L] + norm_ln2(r_mid) W_skipᵀ (+ injection at mlp_out)  (then nothing: the
              transcoder predicts hook_mlp_out itself, any post-norm included)
    logits  = norm_final(r_final) W_U + b_U            (Gemma 2's final soft cap applied only in ``logits``)

Everything but the injections and the constants is linear, so every target (a feature's encoder pre-activation,
a logit) is an affine function of the node contributions, and its gradient at a layer's ``mlp_out`` contracted with a
source's vector is the source's direct effect on it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from einops import einsum, repeat
from jaxtyping import Float, Int
from torch import Tensor

from interp.dictionaries.dictionary import SparseDictionary
from interp.errors import InterpError
from interp.model.internals import unwrapped
from interp.store.readout import describe_norm

Transcoders = Sequence[SparseDictionary] | Mapping[int, SparseDictionary]


@dataclass(frozen=True)
class FrozenNorm:
    """A norm with its scale ``s[pos, 1]`` frozen: ``centre(x) / s · (weight + offset) + bias``."""

    kind: str  # "layernorm", "rmsnorm" or "none"
    scale: Float[Tensor, "pos 1"]
    weight: Tensor | None
    bias: Tensor | None
    offset: float

    def __call__(self, x: Float[Tensor, "batch pos d"], affine: bool = True) -> Float[Tensor, "batch pos d"]:
        """The frozen norm of ``x``; without ``affine`` only ``centre(x) / s`` (what some bridges' LayerNorm
        ``hook_normalized`` holds)."""
        if self.kind == "layernorm":
            x = x - x.mean(-1, keepdim=True)
        x = x / self.scale
        if not affine:
            return x
        if self.weight is not None:
            x = x * (self.weight + self.offset)
        if self.bias is not None:
            x = x + self.bias
        return x


def _frozen_norm(module: Any, x: Float[Tensor, "pos d"]) -> FrozenNorm:
    """The norm ``module`` with its scale frozen at its value on ``x`` (the norm's input in the real run)."""
    kind, weight, bias, eps, offset = describe_norm(unwrapped(module))
    x = x.float()
    if kind == "layernorm":
        scale = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    elif kind == "rmsnorm":
        scale = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    else:
        scale = torch.ones_like(x[..., :1])
    as_float = lambda t: None if t is None else t.float()  # noqa: E731
    return FrozenNorm(kind, scale, as_float(weight), as_float(bias), offset)


@dataclass(frozen=True)
class FrozenLayer:
    """One block's constants and linear weights."""

    ln1: FrozenNorm
    ln1_post: FrozenNorm | None
    ln2: FrozenNorm
    pattern: Float[Tensor, "head q k"]
    W_V: Float[Tensor, "kv_head d_model d_head"]
    b_V: Float[Tensor, "kv_head d_head"] | None
    W_O: Float[Tensor, "head d_head d_model"]
    b_O: Float[Tensor, " d_model"] | None
    transcoder: SparseDictionary
    codes: Float[Tensor, "pos d_sae"]
    error: Float[Tensor, "pos d_model"]
    ln2_normalized: Float[Tensor, "pos d_model"]  # the transcoder's input in the real run
    reads_affine: bool  # whether ln2.hook_normalized is after the norm's weight and bias (else centre(x) / s)


@dataclass(frozen=True)
class FrozenForward:
    """What one forward of the frozen replacement computed, per batch row (see the module docstring)."""

    mlp_injections: list[Tensor]  # per layer [batch, pos, d_model], zeros: the gradient there is d target / d mlp_out
    embed_injection: Tensor  # [batch, pos, d_model], zeros: the gradient at the token vectors
    ln2_normalized: list[Tensor]  # per layer [batch, pos, d_model]: the transcoders' inputs
    final_normalized: Tensor  # [batch, pos, d_model]


class FrozenReplacement:
    """The prompt's frozen replacement model (see the module docstring); build it with :func:`freeze`."""

    def __init__(
        self,
        tokens: Int[Tensor, " pos"],
        token_vectors: Float[Tensor, "pos d_model"],
        layers: list[FrozenLayer],
        final_norm: FrozenNorm,
        W_U: Float[Tensor, "d_model d_vocab"],
        b_U: Float[Tensor, " d_vocab"] | None,
        logit_soft_cap: float,
        real_logits: Float[Tensor, " pos d_vocab"],
    ) -> None:
        self.tokens = tokens
        self.token_vectors = token_vectors
        self.layers = layers
        self.final_norm = final_norm
        self.W_U = W_U
        self.b_U = b_U
        self.logit_soft_cap = logit_soft_cap
        self.real_logits = real_logits

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.token_vectors.shape[-1])

    def feature_vectors(self, layer: int, features: Tensor) -> Float[Tensor, "n d_model"]:
        """``W_dec[f]`` of ``features`` of ``layer``'s transcoder (unscaled)."""
        return self.layers[layer].transcoder.W_dec[features]

    def to(self, dtype: torch.dtype) -> "FrozenReplacement":
        """A copy with every constant and weight in ``dtype`` (float64: edges checked without float32 rounding)."""
        return FrozenReplacement(
            tokens=self.tokens,
            token_vectors=self.token_vectors.to(dtype),
            layers=[_converted(layer, dtype) for layer in self.layers],
            final_norm=_converted(self.final_norm, dtype),
            W_U=self.W_U.to(dtype),
            b_U=None if self.b_U is None else self.b_U.to(dtype),
            logit_soft_cap=self.logit_soft_cap,
            real_logits=self.real_logits,
        )

    def forward(
        self,
        batch: int = 1,
        feature_scales: list[Float[Tensor, "batch pos d_sae"]] | None = None,
        error_scales: Float[Tensor, "batch layer pos"] | None = None,
        token_scales: Float[Tensor, "batch pos"] | None = None,
        requires_grad: bool = False,
    ) -> FrozenForward:
        """Run the frozen replacement on ``batch`` copies of the prompt.

        ``feature_scales[L]`` multiplies each code of layer ``L`` (1: as in the real run, 0: the feature's
        contribution removed), ``error_scales`` each error node, ``token_scales`` each token vector: the
        interventions that measure an edge independently of gradients. With ``requires_grad`` the zero injections
        at the embedding and at every ``mlp_out`` are leaves whose gradients give the direct effects.
        """
        d, dtype = self.d_model, self.token_vectors.dtype
        embed_injection = torch.zeros(batch, self.n_pos, d, dtype=dtype, requires_grad=requires_grad)
        tokens = repeat(self.token_vectors, "pos d -> batch pos d", batch=batch)
        if token_scales is not None:
            tokens = tokens * token_scales[..., None]
        resid = tokens + embed_injection
        injections, normalized = [], []
        for index, layer in enumerate(self.layers):
            resid = resid + self._attention(layer, resid)
            ln2_out = layer.ln2(resid, affine=layer.reads_affine)
            normalized.append(ln2_out)
            codes = repeat(layer.codes, "pos f -> batch pos f", batch=batch)
            if feature_scales is not None:
                codes = codes * feature_scales[index]
            error = repeat(layer.error, "pos d -> batch pos d", batch=batch)
            if error_scales is not None:
                error = error * error_scales[:, index, :, None]
            transcoder = layer.transcoder
            mlp = codes @ transcoder.W_dec + transcoder.b_dec + error
            if transcoder.W_skip is not None:
                mlp = mlp + ln2_out @ transcoder.W_skip.T
            injection = torch.zeros(batch, self.n_pos, d, dtype=dtype, requires_grad=requires_grad)
            injections.append(injection)
            resid = resid + mlp + injection
        return FrozenForward(injections, embed_injection, normalized, self.final_norm(resid))

    def _attention(self, layer: FrozenLayer, resid: Float[Tensor, "batch pos d"]) -> Float[Tensor, "batch pos d"]:
        values = einsum(layer.ln1(resid), layer.W_V, "batch pos d, kv d e -> batch pos kv e")
        if layer.b_V is not None:
            values = values + layer.b_V
        heads_per_kv = layer.W_O.shape[0] // layer.W_V.shape[0]
        values = values.repeat_interleave(heads_per_kv, dim=2)  # grouped-query attention: kv head h // heads_per_kv
        mixed = einsum(layer.pattern, values, "head q k, batch k head e -> batch q head e")
        out = einsum(mixed, layer.W_O, "batch q head e, head e d -> batch q d")
        if layer.b_O is not None:
            out = out + layer.b_O
        return out if layer.ln1_post is None else layer.ln1_post(out)

    def unembed(self, final_normalized: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
        """Logits before any soft cap: ``final_normalized @ W_U + b_U``."""
        logits = final_normalized @ self.W_U
        return logits if self.b_U is None else logits + self.b_U

    def logits(self, run: FrozenForward) -> Float[Tensor, "batch pos d_vocab"]:
        """The replacement's logits, with the model's final soft cap (Gemma 2) applied as the model does."""
        logits = self.unembed(run.final_normalized)
        if self.logit_soft_cap > 0:
            logits = self.logit_soft_cap * torch.tanh(logits / self.logit_soft_cap)
        return logits

    def pre_activations(self, run: FrozenForward, layer: int) -> Float[Tensor, "batch pos d_sae"]:
        """Layer ``layer``'s transcoder encoder pre-activations in a frozen run."""
        return self.layers[layer].transcoder.pre_activations(run.ln2_normalized[layer])


def _converted(record: Any, dtype: torch.dtype) -> Any:
    """``record`` (a frozen dataclass of tensors, norms and a transcoder) with its floating tensors in ``dtype``."""
    changes: dict[str, Any] = {}
    for spec in fields(record):
        value = getattr(record, spec.name)
        if isinstance(value, Tensor) and value.is_floating_point():
            changes[spec.name] = value.to(dtype)
        elif isinstance(value, (FrozenNorm, SparseDictionary)):
            changes[spec.name] = _converted(value, dtype)
    return replace(record, **changes)


def transcoder_list(model: Any, transcoders: Transcoders) -> list[SparseDictionary]:
    """One transcoder per layer, in layer order, each checked against ``model`` and its site (one-line errors)."""
    n_layers = int(model.cfg.n_layers)
    by_layer = dict(transcoders) if isinstance(transcoders, Mapping) else dict(enumerate(transcoders))
    missing = [layer for layer in range(n_layers) if by_layer.get(layer) is None]
    if missing:
        raise InterpError(
            f"attribution graphs need one transcoder per layer; none for layer(s) {missing} of {n_layers}."
        )
    extra = sorted(set(by_layer) - set(range(n_layers)))
    if extra:
        raise InterpError(f"transcoders given for layer(s) {extra}, but the model has {n_layers} layers.")
    ordered = []
    for layer in range(n_layers):
        transcoder = by_layer[layer]
        if not isinstance(transcoder, SparseDictionary):
            raise InterpError(
                f"layer {layer}'s transcoder must be a SparseDictionary, got {type(transcoder).__name__}."
            )
        want_in, want_out = f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"
        if transcoder.site != want_in or transcoder.output_site != want_out:
            raise InterpError(
                f"layer {layer}'s transcoder reads {transcoder.site or '?'} and writes "
                f"{transcoder.output_site or '?'}; attribution graphs need {want_in} -> {want_out}."
            )
        transcoder.check_usable(model)
        d_model = int(model.cfg.d_model)
        if transcoder.d_in != d_model or transcoder.d_out != d_model:
            raise InterpError(
                f"layer {layer}'s transcoder maps {transcoder.d_in} -> {transcoder.d_out}; the model's width is "
                f"{d_model}."
            )
        ordered.append(transcoder)
    return ordered


def prompt_tokens(model: Any, prompt: str | Sequence[int] | Tensor) -> Int[Tensor, " pos"]:
    """The prompt's token ids (a string as the model tokenizes it alone, BOS rules included); refuses one longer
    than the model's context."""
    from interp.data import tokenize_prompts

    limit = int(model.cfg.n_ctx)
    if isinstance(prompt, str):
        return tokenize_prompts(model, [prompt])[0].cpu()
    tokens = torch.as_tensor(prompt, dtype=torch.long).cpu()
    if tokens.ndim == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim != 1 or tokens.numel() == 0:
        raise InterpError(f"the prompt's token ids must be one non-empty sequence, got shape {tuple(tokens.shape)}.")
    if tokens.numel() > limit:
        raise InterpError(f"the prompt is {tokens.numel()} tokens long but the model's context is {limit} tokens.")
    vocab = int(model.cfg.d_vocab)
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab:
        raise InterpError(f"the prompt's token ids must lie in 0..{vocab - 1}.")
    return tokens


def _weight(module: Any, name: str) -> Tensor | None:
    value = getattr(module, name, None)
    return None if value is None else value.detach().float().cpu()


@torch.no_grad()
def freeze(model: Any, prompt: str | Sequence[int] | Tensor, transcoders: Transcoders) -> FrozenReplacement:
    """Run ``model`` once on ``prompt`` and return its frozen replacement (see the module docstring)."""
    ordered = transcoder_list(model, transcoders)
    tokens = prompt_tokens(model, prompt)
    n_layers = len(ordered)
    post_norms = hasattr(model.blocks[0], "ln1_post")
    names = ["blocks.0.hook_resid_pre", f"blocks.{n_layers - 1}.hook_resid_post"]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.{site}" for site in ("hook_resid_pre", "hook_resid_mid", "attn.hook_pattern")]
        names += [f"blocks.{layer}.{site}" for site in ("ln2.hook_normalized", "hook_mlp_out")]
        if post_norms:
            names.append(f"blocks.{layer}.ln1_post.hook_in")
    missing = [name for name in names if name not in model.hook_dict]
    if missing:
        raise InterpError(f"this model cannot be frozen for attribution graphs: it has no hook {missing[0]}.")
    seen: dict[str, Tensor] = {}

    def keeper(name: str):
        def keep(acts: Tensor, hook: Any) -> Tensor:
            seen[name] = acts.detach()[0].float().cpu()
            return acts

        return keep

    device = next(model.parameters()).device
    with model.hooks(fwd_hooks=[(name, keeper(name)) for name in dict.fromkeys(names)]):
        real_logits = model(tokens[None].to(device)).detach()[0].float().cpu()
    layers = []
    for layer, transcoder in enumerate(ordered):
        block = model.blocks[layer]
        transcoder = _on_cpu(transcoder)
        normalized = seen[f"blocks.{layer}.ln2.hook_normalized"]
        ln2 = _frozen_norm(block.ln2, seen[f"blocks.{layer}.hook_resid_mid"])
        reads_affine = _reads_affine(ln2, seen[f"blocks.{layer}.hook_resid_mid"], normalized, layer)
        codes = transcoder.encode(normalized).float()
        error = seen[f"blocks.{layer}.hook_mlp_out"] - transcoder.decode(codes, normalized).float()
        layers.append(
            FrozenLayer(
                ln1=_frozen_norm(block.ln1, seen[f"blocks.{layer}.hook_resid_pre"]),
                ln1_post=_frozen_norm(block.ln1_post, seen[f"blocks.{layer}.ln1_post.hook_in"]) if post_norms else None,
                ln2=ln2,
                pattern=seen[f"blocks.{layer}.attn.hook_pattern"],
                W_V=_weight(block.attn, "W_V"),  # type: ignore[arg-type]
                b_V=_weight(block.attn, "b_V"),
                W_O=_weight(block.attn, "W_O"),  # type: ignore[arg-type]
                b_O=_weight(block.attn, "b_O"),
                transcoder=transcoder,
                codes=codes,
                error=error,
                ln2_normalized=normalized,
                reads_affine=reads_affine,
            )
        )
    soft_cap = float(getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0)
    return FrozenReplacement(
        tokens=tokens,
        token_vectors=seen["blocks.0.hook_resid_pre"],
        layers=layers,
        final_norm=_frozen_norm(model.ln_final, seen[f"blocks.{n_layers - 1}.hook_resid_post"]),
        W_U=_weight(model, "W_U"),  # type: ignore[arg-type]
        b_U=_weight(model, "b_U"),
        logit_soft_cap=soft_cap,
        real_logits=real_logits,
    )


def _reads_affine(norm: FrozenNorm, resid_mid: Tensor, normalized: Tensor, layer: int) -> bool:
    """Whether the real ``ln2.hook_normalized`` is the norm's whole output (True) or ``centre(x) / s`` (False): the
    bridge's LayerNorm hooks the latter, its RMSNorms the former. Refuses a hook that is neither."""
    scale = normalized.abs().max().clamp_min(1e-12)
    errors = {
        affine: float((norm(resid_mid, affine=affine) - normalized).abs().max() / scale) for affine in (True, False)
    }
    best = min(errors, key=lambda affine: errors[affine])
    if errors[best] > 1e-4:
        raise InterpError(
            f"blocks.{layer}.ln2.hook_normalized is neither the norm's output nor its centred, scaled input "
            f"(relative error {errors[best]:.2g}); this architecture cannot be frozen for attribution graphs."
        )
    return best


def _on_cpu(transcoder: SparseDictionary) -> SparseDictionary:
    moved = {
        name: getattr(transcoder, name).detach().float().cpu()
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip")
        if getattr(transcoder, name) is not None
    }
    return replace(transcoder, **moved)
