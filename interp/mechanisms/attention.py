"""Attention patterns: where one head looks, query token by key token, over one prompt.

From a model (the pattern is captured at ``blocks.{layer}.attn.hook_pattern``) or from an
ActivationStore that cached that site at every position (``--hooks pattern --positions all``).

>>> pattern = attention_pattern(model, "When Mary and John went to the store, John gave a drink to",
...                             layer=9, head=3)  # doctest: +SKIP
>>> pattern.strongest(query=-1)     # the keys the last token attends to most   # doctest: +SKIP
>>> pattern.figure().show()                                                   # doctest: +SKIP
"""

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp import plots
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.provenance import Provenance
from interp.results import Result
from interp.sites import site_name

FORMAT = ResultFormat(
    kind="attention_pattern",
    version=1,
    name="attention-pattern result",
    meta_file="pattern.json",
    tensors_file="pattern.safetensors",
    create="attention_pattern(model, prompt, layer, head).save(DIR) or `interp dla ... --pattern LAYER.HEAD --out DIR`",
    load="AttentionPattern.load(DIR)",
)


@dataclass(frozen=True)
class AttentionPattern(Result):
    """``pattern[query, key]``: head ``head`` of layer ``layer`` over ``prompt``'s tokens (``tokens``)."""

    FORMAT = FORMAT
    FIGURE_FILE = "pattern.html"

    prompt: str
    tokens: tuple[str, ...]
    layer: int
    head: int
    pattern: Float[Tensor, "query key"]
    provenance: Provenance

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if tuple(self.pattern.shape) != (n, n):
            raise InterpError(
                f"AttentionPattern.pattern has shape {tuple(self.pattern.shape)}, expected ({n}, {n}) "
                f"(query, key) for {n} tokens."
            )

    @property
    def label(self) -> str:
        return f"L{self.layer}H{self.head}"

    def strongest(self, query: int = -1, k: int = 3) -> tuple[tuple[int, str, float], ...]:
        """The ``k`` keys ``query`` attends to most, as ``(key position, token, weight)``."""
        n = len(self.tokens)
        if not -n <= query < n:
            raise InterpError(f"query position {query} does not exist; the prompt has {n} tokens.")
        weights = self.pattern[query]
        order = weights.argsort(descending=True)[:k]
        return tuple((int(i), self.tokens[int(i)], float(weights[i])) for i in order)

    def figure(self) -> go.Figure:
        """Query x key heatmap over the prompt's tokens; hover reads ``query 'tok' -> key 'tok': weight``."""
        title = f"Attention pattern {self.label} — {plots.short(self.prompt, 60)} — {self.provenance.model_id}"
        return plots.attention_pattern_figure(self.pattern.numpy(), self.tokens, title)


def attention_pattern(source, prompt: str | int, layer: int, head: int) -> AttentionPattern:
    """The attention pattern of ``head`` in ``layer`` over one prompt.

    Args:
        source: a TransformerBridge (``prompt`` is the text) or an ActivationStore that cached
            ``blocks.{layer}.attn.hook_pattern`` with positions "all" (``prompt`` is its index).
        layer / head: which head (counting from 0).
    """
    from interp.store import ActivationStore

    if isinstance(source, ActivationStore):
        check_head(layer, head, source.n_layers, int(source.manifest["n_heads"]))
        return _from_store(source, prompt, site_name("pattern", layer), layer, head)
    check_head(layer, head, int(source.cfg.n_layers), int(source.cfg.n_heads))
    if not isinstance(prompt, str):
        raise InterpError(
            "attention_pattern(model, prompt, ...) takes the prompt's text, "
            f"got {type(prompt).__name__}; an index needs a store."
        )
    from interp.data import PromptSet, tokenize_prompts
    from interp.model import model_id
    from interp.model.weights import weights_hash
    from interp.store import capture_activations

    name = site_name("pattern", layer)
    prompt_set = PromptSet.from_texts([prompt])
    captured = capture_activations(
        source, prompt_set, hooks=[name], positions="all", batch_size=1, dtype=torch.float32
    )[name]  # [1, head, query, key]
    ids = tokenize_prompts(source, prompt_set)[0]
    tokens = tuple(source.tokenizer.decode([int(t)]) for t in ids)
    provenance = Provenance(
        model_id=model_id(source), weights_hash=weights_hash(source), dataset_hash=prompt_set.hash, hooks=(name,)
    )
    return AttentionPattern(
        prompt=prompt,
        tokens=tokens,
        layer=layer,
        head=head,
        pattern=captured[0, head].contiguous(),
        provenance=provenance,
    )


def _from_store(store, prompt, name: str, layer: int, head: int) -> AttentionPattern:
    if not isinstance(prompt, int) or isinstance(prompt, bool) or not 0 <= prompt < store.n_prompts:
        raise InterpError(f"from a store, the prompt is its index (0..{store.n_prompts - 1}), got {prompt!r}.")
    if name not in store or store.positions != "all":
        raise InterpError(
            f"the store at {store.root} holds no {name} at every position; "
            "cache it with --hooks pattern --positions all (or pass the model)."
        )
    n = int(store.lengths[prompt])
    pattern = store[name][prompt, head, :n, :n].float().contiguous()  # [prompt, head, query, key], right-padded
    return AttentionPattern(
        prompt=store.prompts.texts[prompt],
        tokens=tuple(store.str_tokens(prompt)),
        layer=layer,
        head=head,
        pattern=pattern,
        provenance=store.provenance,
    )


def check_head(layer, head, n_layers: int, n_heads: int) -> None:
    if not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise InterpError(f"layer {layer!r} does not exist; the model has layers 0..{n_layers - 1}.")
    if not isinstance(head, int) or not 0 <= head < n_heads:
        raise InterpError(f"head {head!r} does not exist; layer {layer} has heads 0..{n_heads - 1}.")


@torch.inference_mode()
def attention_to(
    model, tokens: Int[Tensor, "prompt pos"], keys: Int[Tensor, " prompt"], query: int = -1, batch_size: int = 32
) -> Float[Tensor, "prompt layer head"]:
    """Every head's attention weight from position ``query`` to each prompt's own key position ``keys[prompt]``.

    One batched forward per ``batch_size`` prompts, read at ``blocks.{layer}.attn.hook_pattern``;
    e.g. how much the final position attends to the indirect object in IOI prompts.

    >>> to_io = attention_to(model, prompts.clean_tokens, prompts.io_positions)   # doctest: +SKIP
    >>> to_io.mean(0)[9, 3]                                                        # doctest: +SKIP
    """
    if tokens.ndim != 2 or tokens.shape[0] == 0:
        raise InterpError(
            f"tokens must be [prompt, pos] ids of prompts of one length, got shape {tuple(tokens.shape)}."
        )
    n_prompts, n_pos = tokens.shape
    keys = torch.as_tensor(keys, dtype=torch.long).reshape(-1)
    if keys.shape != (n_prompts,):
        raise InterpError(
            f"keys has {keys.numel()} positions for {n_prompts} prompts; give one key position per prompt."
        )
    if not -n_pos <= query < n_pos or keys.min() < 0 or keys.max() >= n_pos:
        raise InterpError(
            f"query {query} and key positions {int(keys.min())}..{int(keys.max())} must lie in the "
            f"prompts' {n_pos} positions."
        )
    query = query % n_pos
    if (keys > query).any():
        raise InterpError(
            f"a key position lies after the query position {query}; a causal model attends only to earlier positions."
        )
    n_layers = int(model.cfg.n_layers)
    weights = torch.zeros(n_prompts, n_layers, int(model.cfg.n_heads))
    rows: dict[str, Any] = {}  # the batch being run: "start" (its first prompt) and "keys" (its key positions)

    def read(layer: int):
        def hook(pattern: Tensor, hook) -> Tensor:  # [batch, head, query, key]
            batch = pattern.shape[0]
            key = rows["keys"].to(pattern.device)
            weights[rows["start"] : rows["start"] + batch, layer] = (
                pattern[torch.arange(batch, device=pattern.device), :, query, key].float().cpu()
            )
            return pattern

        return hook

    with model.hooks(fwd_hooks=[(site_name("pattern", layer), read(layer)) for layer in range(n_layers)]):
        for start in range(0, n_prompts, batch_size):
            rows.update(start=start, keys=keys[start : start + batch_size])
            model(tokens[start : start + batch_size].to(model.cfg.device), return_type="logits")
    return weights
