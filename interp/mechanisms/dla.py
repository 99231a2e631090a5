"""Direct logit attribution: how much each component writes the answer's logit (or logit difference) directly.

The final residual is the sum of the embeddings and every attention and MLP output. With the final
norm's scale frozen at its value on that actual residual, the readout is linear, so the logit
difference splits exactly into one term per component (LayerNorm: each component centred first),
plus the readout's biases. Heads split their layer's attention output through ``hook_z @ W_O``
(Gemma 2's post-attention norm frozen the same way). Works from a model, or from an
ActivationStore that holds the component sites (no model: per layer only, a store keeps no W_O).

>>> result = direct_logit_attribution(model, ["When Mary and John went to the store, John gave a drink to"],
...                                   answer=" Mary", wrong=" John")                  # doctest: +SKIP
>>> result.top(5)                  # the five heads that write the difference most    # doctest: +SKIP
>>> result.figure().show()                                                             # doctest: +SKIP
>>> direct_logit_attribution(ActivationStore.open("acts"), answer=" Mary", wrong=" John")   # doctest: +SKIP
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp import defaults, plots
from interp.data import PromptSet
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.metrics import per_prompt_token_ids
from interp.model import materialized
from interp.provenance import Provenance
from interp.results import Result
from interp.sites import GLOBAL_SITES, layer_sites, site_name
from interp.store.readout import Readout, describe_norm

Kind = Literal["head", "component"]
FORMAT = ResultFormat(
    kind="dla",
    version=1,
    name="direct-logit-attribution result",
    meta_file="dla.json",
    tensors_file="dla.safetensors",
    create="direct_logit_attribution(model, prompts, answer, wrong).save(DIR) or `interp dla --model M --prompt "
    "TEXT --answer A --out DIR`",
    load="DLAResult.load(DIR)",
)
READS = "attribution reads one token's logit"
BIAS = "bias"  # the component holding the readout's constant terms: final-norm bias and unembedding bias


@dataclass(frozen=True)
class DLAResult(Result):
    """Direct logit attribution at every (prompt, position read) to each component and each head.

    Axes: ``prompt``, ``pos`` (the positions read; ``positions`` holds them, ``position_tokens``
    names them), ``component`` (``components``: "embed", ["pos_embed",] "L0 attn", "L0 mlp", ...,
    "bias"), ``layer``, ``head``. Values are in logits, before Gemma 2's final soft-capping.

    Identities (up to float error): ``component_values.sum(-1) == logit_diff`` and, per layer,
    ``head_values.sum(-1) + head_bias == component_values[..., "L{l} attn"]``.
    ``head_values`` / ``head_bias`` are None when computed from a store (it keeps no W_O).
    """

    FORMAT = FORMAT
    FIGURE_FILE = "dla.html"

    prompts: tuple[str, ...]
    positions: Int[Tensor, "prompt pos"]
    position_tokens: tuple[tuple[str, ...], ...]
    answer_ids: Int[Tensor, " prompt"]
    answer_tokens: tuple[str, ...]
    wrong_ids: Int[Tensor, " prompt"] | None
    wrong_tokens: tuple[str, ...] | None
    components: tuple[str, ...]
    component_values: Float[Tensor, "prompt pos component"]
    head_values: Float[Tensor, "prompt pos layer head"] | None
    head_bias: Float[Tensor, "prompt pos layer"] | None
    logit_diff: Float[Tensor, "prompt pos"]
    provenance: Provenance
    softcap: float | None = None

    def __post_init__(self) -> None:
        n_prompt, n_pos = len(self.prompts), self.positions.shape[1]
        if tuple(self.positions.shape) != (n_prompt, n_pos) or len(self.position_tokens) != n_prompt:
            raise InterpError(
                f"DLAResult.positions has shape {tuple(self.positions.shape)}, expected ({n_prompt}, pos) with "
                "one token list per prompt."
            )
        expected = (n_prompt, n_pos, len(self.components))
        if tuple(self.component_values.shape) != expected:
            raise InterpError(
                f"DLAResult.component_values has shape {tuple(self.component_values.shape)}, expected {expected} "
                "(prompt, pos, component)."
            )
        if tuple(self.logit_diff.shape) != (n_prompt, n_pos):
            raise InterpError(
                f"DLAResult.logit_diff has shape {tuple(self.logit_diff.shape)}, "
                f"expected {(n_prompt, n_pos)} (prompt, pos)."
            )
        if (self.head_values is None) != (self.head_bias is None):
            raise InterpError("DLAResult.head_values and head_bias come together: give both or neither.")
        if self.head_values is not None and self.head_bias is not None:  # (both or neither, checked above)
            n_layers = self.n_layers
            if tuple(self.head_values.shape[:3]) != (n_prompt, n_pos, n_layers) or self.head_values.dim() != 4:
                raise InterpError(
                    f"DLAResult.head_values has shape {tuple(self.head_values.shape)}, "
                    f"expected ({n_prompt}, {n_pos}, {n_layers}, head)."
                )
            if tuple(self.head_bias.shape) != (n_prompt, n_pos, n_layers):
                raise InterpError(
                    f"DLAResult.head_bias has shape {tuple(self.head_bias.shape)}, "
                    f"expected ({n_prompt}, {n_pos}, {n_layers})."
                )
        if len(self.answer_tokens) != n_prompt or tuple(self.answer_ids.shape) != (n_prompt,):
            raise InterpError(f"DLAResult needs one answer per prompt ({n_prompt}).")
        if (self.wrong_ids is None) != (self.wrong_tokens is None) or (
            self.wrong_tokens is not None and len(self.wrong_tokens) != n_prompt
        ):
            raise InterpError(
                f"DLAResult needs one wrong token per prompt ({n_prompt}), or none for both wrong_ids and wrong_tokens."
            )

    @property
    def n_layers(self) -> int:
        return sum(name.endswith(" attn") for name in self.components)

    @property
    def head_labels(self) -> tuple[str, ...]:
        """``L{layer}H{head}`` in (layer, head) order, as ``head_values`` flattens."""
        if self.head_values is None:
            return ()
        return tuple(
            f"L{layer}H{head}"
            for layer in range(self.head_values.shape[2])
            for head in range(self.head_values.shape[3])
        )

    @property
    def metric(self) -> str:
        """What the values attribute: ``logit(' Mary') - logit(' John')`` (first prompt's tokens when they differ)."""
        return metric_label(self.answer_tokens, self.wrong_tokens)

    @property
    def identity_error(self) -> float:
        """max |sum of the components - logit_diff| over every prompt and position (float error only)."""
        return float((self.component_values.sum(-1) - self.logit_diff).abs().max())

    @property
    def head_identity_error(self) -> float:
        """max |sum of a layer's heads + its output bias - the layer's attention component| (NaN without heads)."""
        if self.head_values is None or self.head_bias is None:  # (both or neither)
            return float("nan")
        attn = self.component_values[..., [self.components.index(f"L{layer} attn") for layer in range(self.n_layers)]]
        return float((self.head_values.sum(-1) + self.head_bias - attn).abs().max())

    def values(self, kind: Kind = "component", prompt: int | None = None, pos: int = -1) -> Float[Tensor, "..."]:
        """``[component]`` or ``[layer, head]`` values at position index ``pos`` (of those read), for one prompt or the
        mean over prompts."""
        if kind not in ("head", "component"):
            raise InterpError(f"kind must be 'head' or 'component', got {kind!r}.")
        data = self.component_values if kind == "component" else self.head_values
        if data is None:
            raise InterpError(
                "this result has no per-head values: it was computed from a store, which keeps no W_O. "
                "Run direct_logit_attribution(model, prompts, ...) for heads."
            )
        if not -self.positions.shape[1] <= pos < self.positions.shape[1]:
            raise InterpError(
                f"position index {pos} does not exist; this result read {self.positions.shape[1]} positions per prompt."
            )
        if prompt is None:
            return data[:, pos].mean(0)
        if not 0 <= prompt < len(self.prompts):
            raise InterpError(f"prompt {prompt} does not exist; this result has {len(self.prompts)} prompts.")
        return data[prompt, pos]

    def top(
        self, k: int = defaults.DLA_TOP_K, kind: Kind = "head", prompt: int | None = None, pos: int = -1
    ) -> tuple[tuple[str, float], ...]:
        """The ``k`` heads (or components) with the largest |value|, as ``(label, value)``; mean over prompts unless
        ``prompt``."""
        values = self.values(kind, prompt, pos).flatten()
        labels = self.head_labels if kind == "head" else self.components
        order = values.abs().argsort(descending=True)[:k]
        return tuple((labels[int(i)], float(values[i])) for i in order)

    def figure(self, prompt: int | None = None, pos: int = -1) -> go.Figure:
        """Bars over the components and a layer x head heatmap, at position index ``pos``; mean over prompts unless
        ``prompt``."""
        components = self.values("component", prompt, pos)
        heads = None if self.head_values is None else self.values("head", prompt, pos)
        total = float(self.logit_diff[:, pos].mean()) if prompt is None else float(self.logit_diff[prompt, pos])
        where = (
            f"mean over {len(self.prompts)} prompts"
            if prompt is None
            else f"prompt {prompt} at {self.position_tokens[prompt][pos]!r}"
        )
        component_hover = [
            f"<b>{name}</b><br>{self.metric}: {float(v):+.4g}<br>share of total: {_share(float(v), total)}"
            for name, v in zip(self.components, components)
        ]
        head_hover = None
        if heads is not None:
            head_hover = [[f"<b>L{layer}H{head}</b><br>{self.metric}: {float(heads[layer, head]):+.4g}<br>share of "
                           f"total: {_share(float(heads[layer, head]), total)}"
                           for head in range(heads.shape[1])] for layer in range(heads.shape[0])]  # fmt: skip
        title = f"Direct logit attribution to {self.metric} = {total:.3g} ({where}) — {self.provenance.model_id}"
        return plots.dla_figure(
            self.components,
            components.numpy(),
            None if heads is None else heads.numpy(),
            component_hover,
            head_hover,
            title,
            "direct effect (logits)",
        )

    def files(self) -> dict[str, str]:
        return {"dla.csv": self._csv()}

    def _csv(self) -> str:
        """One row per (prompt, position, component or head)."""
        rows = ["prompt,position,token,kind,name,value"]
        for p in range(len(self.prompts)):
            for q in range(self.positions.shape[1]):
                start = f"{p},{int(self.positions[p, q])},{_csv(self.position_tokens[p][q])}"
                rows += [
                    f"{start},component,{_csv(name)},{float(self.component_values[p, q, c]):.6g}"
                    for c, name in enumerate(self.components)
                ]
                if self.head_values is not None:
                    rows += [
                        f"{start},head,{label},{float(value):.6g}"
                        for label, value in zip(self.head_labels, self.head_values[p, q].flatten())
                    ]
        return "\n".join(rows) + "\n"


def direct_logit_attribution(
    source,
    prompts: PromptSet | Sequence[str] | str | None = None,
    answer: Sequence[str | int] | str | int | None = None,
    wrong: Sequence[str | int] | str | int | None = None,
    positions: Literal["last"] | Sequence[int] = defaults.DLA_POSITIONS,
    batch_size: int = defaults.CACHE_BATCH_SIZE,
) -> DLAResult:
    """Attribute ``logit(answer) - logit(wrong)`` at ``positions`` to every component and head.

    Args:
        source: a TransformerBridge (then ``prompts`` is required) or an ActivationStore holding
            ``blocks.0.hook_resid_pre`` (or ``hook_embed``) and every layer's ``attn_out`` and
            ``mlp_out`` (and ideally the last ``resid_post``) at the positions wanted.
        prompts: the prompts (model source only; a store has its own).
        answer: the token whose logit is attributed: one per prompt or one for all (string or
            id). Default: per prompt, the model's own top-1 prediction at the latest position read.
        wrong: the token subtracted (same forms), or None for the plain logit of ``answer``.
        positions: "last" (each prompt's own last token) or positions (negative from each end).
        batch_size: prompts per forward pass (model source).
    """
    from interp.store import ActivationStore

    if isinstance(source, ActivationStore):
        if prompts is not None:
            raise InterpError(
                "a store has its own prompts; call direct_logit_attribution(store, answer=...) without prompts "
                "(or pass the model to use new prompts)."
            )
        parts, final, heads, readout, tokenizer, texts, position_info, provenance = _from_store(source, positions)
    else:
        if prompts is None:
            raise InterpError(
                "direct_logit_attribution(model, ...) needs prompts: "
                "direct_logit_attribution(model, ['When Mary and John ...'], answer=' Mary')."
            )
        parts, final, heads, readout, tokenizer, texts, position_info, provenance = _from_model(
            source, prompts, positions, batch_size
        )
    absolute, position_tokens = position_info
    if answer is None:  # the model's own top-1 at each prompt's latest position read
        latest = final[torch.arange(len(texts)), absolute.argmax(1)]
        answer_ids = readout.unembed(readout.normalize(latest)).argmax(-1)
    else:
        answer_ids = per_prompt_token_ids(answer, tokenizer, len(texts), readout.d_vocab, "answer", READS)
    wrong_ids = (
        None if wrong is None else per_prompt_token_ids(wrong, tokenizer, len(texts), readout.d_vocab, "wrong", READS)
    )
    direction = readout.W_U.float()[:, answer_ids].T  # [prompt, d_model]
    constant = torch.zeros(len(texts)) if readout.b_U is None else readout.b_U.float()[answer_ids]
    if wrong_ids is not None:
        direction = direction - readout.W_U.float()[:, wrong_ids].T
        constant = constant - (0.0 if readout.b_U is None else readout.b_U.float()[wrong_ids])
    norm_bias = torch.zeros(len(texts)) if readout.bias is None else direction @ readout.bias.float()
    gradient = frozen_gradient(
        readout.norm, readout.eps, readout.weight, readout.weight_offset, final, direction[:, None, :]
    )

    def attribute(vectors: Tensor) -> Tensor:  # [prompt, pos, ..., d_model] -> [prompt, pos, ...]
        vectors = center(vectors) if readout.norm == "layernorm" else vectors
        grad = gradient.view(*gradient.shape[:2], *([1] * (vectors.dim() - 3)), gradient.shape[-1])
        return (vectors * grad).sum(-1)

    names = [*parts, BIAS]
    biases = (constant + norm_bias)[:, None].expand(final.shape[:2])
    component_values = torch.stack([attribute(vector) for vector in parts.values()] + [biases], dim=-1)
    logit_diff = (readout.normalize(final) * direction[:, None, :]).sum(-1) + constant[:, None]
    head_values = head_bias = None
    if heads is not None:
        head_values = torch.stack([attribute(out) for out, _ in heads], dim=2)
        head_bias = torch.stack([attribute(bias) for _, bias in heads], dim=2)

    def vocab(ids: Tensor) -> tuple[str, ...]:
        return tuple(tokenizer.decode([int(i)]) for i in ids)

    return DLAResult(
        prompts=tuple(texts),
        positions=absolute,
        position_tokens=position_tokens,
        answer_ids=answer_ids,
        answer_tokens=vocab(answer_ids),
        wrong_ids=wrong_ids,
        wrong_tokens=None if wrong_ids is None else vocab(wrong_ids),
        components=tuple(names),
        component_values=component_values,
        head_values=head_values,
        head_bias=head_bias,
        logit_diff=logit_diff,
        provenance=provenance,
        softcap=readout.softcap,
    )


def metric_label(answer_tokens: Sequence[str], wrong_tokens: Sequence[str] | None) -> str:
    """``logit(' Mary') - logit(' John')``: the attributed metric (``answer`` / ``wrong`` where the prompts differ)."""
    answer = repr(answer_tokens[0]) if len(set(answer_tokens)) == 1 else "answer"
    if wrong_tokens is None:
        return f"logit({answer})"
    wrong = repr(wrong_tokens[0]) if len(set(wrong_tokens)) == 1 else "wrong"
    return f"logit({answer}) - logit({wrong})"


# ---- the linearised norms ---------------------------------------------------------------------


def center(x: Tensor) -> Tensor:
    """``x`` less its mean over the last axis: what a LayerNorm does first (its part of the readout is linear)."""
    return x - x.mean(-1, keepdim=True)


def _norm_scale(kind: str, eps: float, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... 1"]:
    """What the norm divides ``x`` by: sqrt(var + eps) (LayerNorm), sqrt(mean(x²) + eps) (RMSNorm), 1 (none)."""
    if kind == "layernorm":
        return torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    if kind == "rmsnorm":
        return torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return torch.ones_like(x[..., :1])


def frozen_gradient(kind, eps, weight, offset, x: Tensor, direction: Tensor) -> Tensor:
    """``direction`` pulled back through the norm with its scale frozen at its value on ``x`` (centring applied by the
    caller)."""
    effective = direction if weight is None else direction * (weight.float() + offset)
    return effective / _norm_scale(kind, eps, x)


# ---- sources ---------------------------------------------------------------------------------


def _from_model(model, prompts, positions, batch_size):
    from interp.data import tokenize_prompts
    from interp.model import model_id
    from interp.model.weights import weights_hash
    from interp.store import capture_activations

    prompt_set = (
        prompts
        if isinstance(prompts, PromptSet)
        else PromptSet.from_texts([prompts] if isinstance(prompts, str) else list(prompts))
    )
    _check_positions(positions)
    n_layers = int(model.cfg.n_layers)
    standard = getattr(model.cfg, "positional_embedding_type", "") == "standard"
    names = [site_name("resid_pre", 0), *([GLOBAL_SITES["pos_embed"]] if standard else []),
             *layer_sites("attn_out", n_layers), *layer_sites("mlp_out", n_layers), *layer_sites("z", n_layers),
             site_name("resid_post", n_layers - 1)]  # fmt: skip
    captured = _with_pos_axis(
        capture_activations(
            model, prompt_set, hooks=names, positions=positions, batch_size=batch_size, dtype=torch.float32
        ),
        positions,
    )
    parts = _components(
        captured, n_layers, first=site_name("resid_pre", 0), pos_embed=GLOBAL_SITES["pos_embed"] if standard else None
    )
    heads = [_head_outputs(model.blocks[layer], captured[site_name("z", layer)]) for layer in range(n_layers)]
    token_lists = tokenize_prompts(model, prompt_set)
    position_info = _position_info(
        positions,
        [len(ids) for ids in token_lists],
        token_lists,
        lambda ids: [model.tokenizer.decode([int(t)]) for t in ids],
    )
    provenance = Provenance(
        model_id=model_id(model), weights_hash=weights_hash(model), dataset_hash=prompt_set.hash, hooks=tuple(names)
    )
    final = captured[site_name("resid_post", n_layers - 1)]
    return (
        parts,
        final,
        heads,
        _on_cpu(Readout.from_model(model)),
        model.tokenizer,
        prompt_set.texts,
        position_info,
        provenance,
    )


def _from_store(store, positions):
    n_layers = store.n_layers
    first = (
        GLOBAL_SITES["embed"]
        if GLOBAL_SITES["embed"] in store and site_name("resid_pre", 0) not in store
        else site_name("resid_pre", 0)
    )
    pos_embed = GLOBAL_SITES["pos_embed"] if GLOBAL_SITES["pos_embed"] in store else None
    needed = [
        first,
        *([pos_embed] if pos_embed else []),
        *layer_sites("attn_out", n_layers),
        *layer_sites("mlp_out", n_layers),
    ]
    missing = [
        name if name != site_name("resid_pre", 0) else f"{name} (or hook_embed)" for name in needed if name not in store
    ]
    if missing:
        more = f" (and {len(missing) - 1} more sites)" if len(missing) > 1 else ""
        raise InterpError(
            f"direct logit attribution from the store at {store.root} needs {missing[0]}{more}; "
            "cache it with --hooks resid_pre,attn_out,mlp_out,resid_post (or pass the model instead)."
        )
    lengths = [int(n) for n in store.lengths]
    index, request = _store_index(store.positions, positions, lengths)
    rows = torch.arange(store.n_prompts)[:, None]

    def read(name: str) -> Tensor:
        value = store[name].float()
        return value.unsqueeze(1) if index is None else value[rows, index]

    captured = {name: read(name) for name in needed}
    parts = _components(captured, n_layers, first=first, pos_embed=pos_embed)
    summed = cast(Tensor, sum(parts.values()))  # (there is always a component)
    final_name = site_name("resid_post", n_layers - 1)
    final = read(final_name) if final_name in store else summed
    gap = float((final - summed).abs().max())
    if gap > 1e-3 * max(1.0, float(final.abs().max())):
        raise InterpError(
            f"the store's components do not add up to its {final_name} (max gap {gap:.3g}): "
            "a site is missing (cache hook_pos_embed with hook_embed, or resid_pre) or the sites come from different "
            "runs. Re-cache them together."
        )
    token_lists = [store.input_ids[i, : lengths[i]] for i in range(store.n_prompts)]
    position_info = _position_info(request, lengths, token_lists, store.decode)
    return parts, final, None, store.readout, store.tokenizer, store.prompts.texts, position_info, store.provenance


def _components(captured, n_layers: int, first: str, pos_embed: str | None) -> dict[str, Tensor]:
    """``{label: [prompt, pos, d_model]}`` in depth order, summing to the final residual.

    ``first`` is ``blocks.0.hook_resid_pre`` (the token embedding is it less the positional one) or ``hook_embed``.
    """
    token_embed = captured[first]
    if pos_embed is not None and first == site_name("resid_pre", 0):
        token_embed = token_embed - captured[pos_embed]
    parts = {"embed": token_embed}
    if pos_embed is not None:
        parts["pos_embed"] = captured[pos_embed]
    for layer in range(n_layers):
        parts[f"L{layer} attn"] = captured[site_name("attn_out", layer)]
        parts[f"L{layer} mlp"] = captured[site_name("mlp_out", layer)]
    return parts


def _head_outputs(
    block, z: Float[Tensor, "prompt pos head d_head"]
) -> tuple[Float[Tensor, "prompt pos head d_model"], Float[Tensor, "prompt pos d_model"]]:
    """Per-head outputs ``[prompt, pos, head, d_model]`` and the output bias ``[prompt, pos, d_model]`` of one block.

    Their sum is the block's attention output (``hook_attn_out``); a post-attention norm (Gemma 2)
    is applied with its scale frozen at its value on the whole output.
    """
    with materialized(block):  # a layer a device map offloaded reads its weights from where they are kept
        W_O = block.attn.W_O.detach().float().to(z.device)
        if W_O.shape[:2] != z.shape[-2:]:
            raise InterpError(
                f"W_O has shape {tuple(W_O.shape)} but hook_z has {z.shape[-2]} heads of {z.shape[-1]}; "
                "this attention layout is not supported for per-head attribution."
            )
        outputs = torch.einsum("pqhe,hed->pqhd", z, W_O)
        b_O = getattr(block.attn, "b_O", None)
        bias = torch.zeros(outputs.shape[-1]) if b_O is None else b_O.detach().float().to(z.device)
        bias = bias.expand(*outputs.shape[:2], -1)
        post = getattr(block, "ln1_post", None)
        if post is not None:
            kind, weight, post_bias, eps, offset = describe_norm(getattr(post, "original_component", post))
            weight, post_bias = (None if t is None else t.float().to(z.device) for t in (weight, post_bias))
            whole = outputs.sum(-2) + bias
            factor = (1.0 if weight is None else weight + offset) / _norm_scale(kind, eps, whole)
            centered = center if kind == "layernorm" else (lambda x: x)
            outputs = centered(outputs) * factor[:, :, None, :]
            bias = centered(bias) * factor + (0.0 if post_bias is None else post_bias)
        return outputs, bias


def _on_cpu(readout: Readout) -> Readout:
    """The readout with its tensors in float32 on the CPU, where the captured activations are."""
    weight, bias, b_U = (
        None if t is None else t.detach().float().cpu() for t in (readout.weight, readout.bias, readout.b_U)
    )
    return dataclasses.replace(readout, weight=weight, bias=bias, W_U=readout.W_U.detach().float().cpu(), b_U=b_U)


def _check_positions(positions) -> None:
    if isinstance(positions, str) and positions != "last":
        raise InterpError(
            f"positions must be 'last' or a list of positions (negative from each prompt's end), got {positions!r}."
        )


def _with_pos_axis(captured, positions) -> dict[str, Tensor]:
    return {name: value.unsqueeze(1) if positions == "last" else value for name, value in captured.items()}


def _store_index(stored, positions, lengths: list[int]) -> tuple[Tensor | None, str | list[int]]:
    """Indices into the store's position axis for ``positions`` (None: the store read the last token), and the request
    as absolute-able positions."""
    _check_positions(positions)
    if stored == "last":
        if positions != "last":
            raise InterpError(
                f"the store holds only each prompt's last token; positions {positions} need a store cached with "
                "--positions all (or those positions)."
            )
        return None, "last"
    wanted = [-1] if positions == "last" else [int(p) for p in positions]
    if stored == "all":
        for p in wanted:
            if not -min(lengths) <= p < min(lengths):
                raise InterpError(f"position {p} does not exist in the shortest stored prompt ({min(lengths)} tokens).")
        return torch.tensor([[p if p >= 0 else n + p for p in wanted] for n in lengths]), positions
    missing = [p for p in wanted if p not in stored]
    if missing:
        raise InterpError(
            f"the store holds positions {stored}, not {missing}; choose positions among those, or re-cache."
        )
    return torch.tensor([[stored.index(p) for p in wanted]] * len(lengths)), positions


def _position_info(positions, lengths: list[int], token_lists, decode) -> tuple[Tensor, tuple[tuple[str, ...], ...]]:
    if positions == "last":
        absolute = torch.tensor([[n - 1] for n in lengths])
    else:
        absolute = torch.tensor([[p if p >= 0 else n + p for p in positions] for n in lengths])
    tokens = tuple(tuple(decode([int(ids[p])])[0] for p in row.tolist()) for ids, row in zip(token_lists, absolute))
    return absolute, tokens


def _share(value: float, total: float) -> str:
    return f"{value / total:+.1%}" if abs(total) > 1e-12 else "n/a"


def _csv(text: str) -> str:
    return '"' + str(text).replace('"', '""') + '"'
