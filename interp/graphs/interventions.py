"""Interventions on an attribution graph's feature nodes in the real model: ablate, clamp or scale them and read a
target before and after.

A feature ``(layer, position, feature)`` of a per-layer transcoder (reading ``blocks.L.ln2.hook_normalized``,
writing ``blocks.L.hook_mlp_out``) is set to a value ``v`` in the real forward by an addition at its layer's
``mlp_out``, at its position::

    mlp_out[pos] += (v − c[pos, f]) · W_dec[f]          c = transcoder.encode(ln2_normalized of this very run)

The code ``c`` is computed live, from the run being edited, so a feature downstream of an edited one responds
(its own code is read from the edited run), and everything the transcoder does not explain (its error, its
decoder bias and skip term, attention, the norms) stays the model's own. ``v = 0`` ablates the feature;
``scale=s`` sets it to ``s · c`` (its own activation in that run, multiplied).

An intervention set is a group of features edited together in one run: a supernode, named
(``{"say sure": [(3, 13, 41), (2, 13, 7)]}``), or one unnamed list. Every set is run on every prompt, and the target
(one token's logit at the last position, or any ``interp.metrics`` metric such as ``logit_diff``) is read before
(the unedited run) and after::

    before[prompt],  after[set, prompt],  effect = after − before

``top_influence_features(graph, n)`` names a graph's ``n`` feature nodes of largest influence on its logits
(``interp.graphs.prune``'s ``Σ_{k≥1} w N^k``, ``w`` the logit probabilities or one logit node), the usual supernode
to ablate.

>>> say_sure = {"say sure": top_influence_features(graph, 5)}                            # doctest: +SKIP
>>> result = intervene(model, transcoders, say_sure, prompt, target=logit_diff(" sure", " i", tok))  # doctest: +SKIP
>>> result.fraction_removed()                                                            # doctest: +SKIP
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.dictionaries.dictionary import SparseDictionary
from interp.errors import InterpError
from interp.graphs.graph import Graph, Node
from interp.graphs.prune import influence, logit_weights, normalized_adjacency
from interp.graphs.replacement import Transcoders, prompt_tokens
from interp.io import ResultFormat
from interp.metrics import Metric, check_tokenizer, last_logits, metric_name, one_token
from interp.model import model_id
from interp.model.weights import weights_hash
from interp.provenance import Provenance
from interp.results import Result

FeatureSpec = tuple[int, int, int] | Node  # (layer, position, feature index), or a graph's feature node
FeatureSets = Sequence[FeatureSpec] | Mapping[str, Sequence[FeatureSpec]]
Values = float | Sequence[float] | Mapping[str, float | Sequence[float]]
DEFAULT_SET_NAME = "features"
TRANSCODER_SITES = ("ln2.hook_normalized", "hook_mlp_out")  # what a layer's transcoder reads and writes

FORMAT = ResultFormat(
    kind="graph_intervention",
    version=1,
    name="graph intervention result",
    meta_file="graph_intervention.json",
    tensors_file="graph_intervention.safetensors",
    create="interp.graphs.intervene(model, transcoders, features, prompts, target).save(DIR)",
    load="GraphIntervention.load(DIR)",
)


@dataclass(frozen=True)
class GraphIntervention(Result):
    """The target before and after each intervention set (see the module docstring).

    ``features[i] = (set, layer, position, feature)``: the edited features, by set (an index into ``set_names``; a
    negative position counts from each prompt's end);
    ``values[i]``: the value each is set to (NaN when ``scale`` is given: then ``scale`` times its own code);
    ``before[prompt]``, ``after[set, prompt]``: the target on the unedited and the edited runs.
    """

    FORMAT = FORMAT
    FIGURE_FILE = "graph_intervention.html"

    set_names: tuple[str, ...]
    features: Int[Tensor, "edit 4"]
    values: Float[Tensor, " edit"]
    scale: float | None
    prompts: tuple[str, ...]
    target_name: str
    before: Float[Tensor, " prompt"]
    after: Float[Tensor, "set prompt"]
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.features.is_floating_point() or self.features.dtype == torch.bool or self.features.is_complex():
            raise InterpError(f"GraphIntervention.features must hold integers, got {self.features.dtype}.")
        for name in ("values", "before", "after"):
            if not getattr(self, name).is_floating_point():
                raise InterpError(f"GraphIntervention.{name} must be floating point, got {getattr(self, name).dtype}.")
        if self.features.ndim != 2 or self.features.shape[1] != 4:
            raise InterpError(
                f"GraphIntervention.features must be [edit, 4] (set, layer, position, feature), got "
                f"{tuple(self.features.shape)}."
            )
        if tuple(self.values.shape) != (self.features.shape[0],):
            raise InterpError("GraphIntervention.values needs one value per edited feature.")
        n_sets, n_prompts = len(self.set_names), len(self.prompts)
        if tuple(self.before.shape) != (n_prompts,) or tuple(self.after.shape) != (n_sets, n_prompts):
            raise InterpError(
                f"GraphIntervention needs before [{n_prompts}] and after [{n_sets}, {n_prompts}] (sets x prompts), got "
                f"{tuple(self.before.shape)} and {tuple(self.after.shape)}."
            )
        if len(self.features) and not (
            bool((self.features[:, [1, 3]] >= 0).all())
            and 0 <= int(self.features[:, 0].min()) <= int(self.features[:, 0].max()) < n_sets
        ):
            raise InterpError("GraphIntervention.features names a set, layer or feature out of range.")
        if len(set(self.set_names)) != n_sets:
            raise InterpError(f"GraphIntervention.set_names repeat a name: {list(self.set_names)}.")

    @property
    def effect(self) -> Float[Tensor, "set prompt"]:
        """``after − before``, per set and prompt."""
        return self.after - self.before

    def fraction_removed(self) -> dict[str, float]:
        """Per set, the share of the target removed over the prompts: ``(Σ before − Σ after) / Σ before``."""
        total = float(self.before.sum())
        if total == 0:
            raise InterpError("the target is 0 before the interventions; no fraction of it can be removed.")
        return {name: (total - float(self.after[index].sum())) / total for index, name in enumerate(self.set_names)}

    def set_features(self, name: str) -> list[tuple[int, int, int]]:
        """The ``(layer, position, feature)`` edited by set ``name``."""
        if name not in self.set_names:
            raise InterpError(f"no intervention set {name!r}; the result's: {list(self.set_names)}.")
        index = self.set_names.index(name)
        return [(layer, pos, f) for s, layer, pos, f in self.features.tolist() if s == index]

    def figure(self):
        """The target before and after each set: bars of the means over the prompts, a point per prompt."""
        import plotly.graph_objects as go

        labels = ["before", *self.set_names]
        rows = torch.cat([self.before[None], self.after]).float()
        figure = go.Figure(go.Bar(x=labels, y=rows.mean(-1).tolist(), name="mean over prompts"))
        figure.add_trace(
            go.Scatter(
                x=[label for label in labels for _ in self.prompts],
                y=rows.flatten().tolist(),
                text=[prompt for _ in labels for prompt in self.prompts],
                hovertemplate="%{text}<br>%{y:.4g}<extra></extra>",
                mode="markers",
                name="prompts",
            )
        )
        how = "ablated" if self.scale is None and bool((self.values == 0).all()) else "edited"
        if self.scale is not None:
            how = f"scaled by {self.scale:g}"
        figure.update_layout(
            title=f"{self.target_name} with graph features {how} ({len(self.prompts)} prompts)",
            xaxis={"title": "intervention set", "type": "category"},
            yaxis={"title": self.target_name},
        )
        return figure


def intervene(
    model: Any,
    transcoders: Transcoders,
    features: FeatureSets,
    prompts: str | Sequence[str],
    target: Metric | str | int,
    value: Values | None = None,
    scale: float | None = None,
) -> GraphIntervention:
    """Set graph features to values in the real model and read ``target`` before and after (module docstring).

    Args:
        model: the TransformerBridge the transcoders were trained on.
        transcoders: one per layer used (a list, or a dict by layer), each reading ``blocks.L.ln2.hook_normalized``
            and writing ``blocks.L.hook_mlp_out``.
        features: one intervention set (a list of ``(layer, position, feature)`` or graph feature ``Node``s), or
            named sets (supernodes) run one at a time. A negative position counts from each prompt's end.
        prompts: one prompt or several (each run alone, so lengths may differ).
        target: a token (its logit at the last position) or a metric of the logits (``interp.metrics``), one value
            per row.
        value: what the features are set to: one number for all, one per feature of the set (a list), or per set
            (a dict by set name); default 0 (ablation).
        scale: instead of ``value``: each feature set to ``scale`` times its own activation in the run.
    """
    sets = _feature_sets(features)
    if scale is not None and value is not None:
        raise InterpError(
            "give value= (what the features are set to) or scale= (a multiple of their own activation), not both."
        )
    if scale is not None and not torch.isfinite(torch.tensor(float(scale))):
        raise InterpError(f"scale must be a finite number, got {scale!r}.")
    set_values = _set_values(sets, 0.0 if value is None else value)
    by_layer = _transcoders(model, transcoders, sets)
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts:
        raise InterpError("give at least one prompt.")
    read_target, target_name = _target(model, target)
    names = list(sets)
    before = torch.zeros(len(texts))
    after = torch.zeros(len(names), len(texts))
    device = next(model.parameters()).device
    for index, text in enumerate(texts):
        tokens = prompt_tokens(model, text)
        edits = [_resolved(sets[name], set_values[name], len(tokens), text) for name in names]
        with torch.no_grad():
            logits = _edited_logits(model, tokens.to(device), by_layer, edits, scale)
        values = torch.stack([_one_value(read_target, logits[row : row + 1]) for row in range(len(logits))])
        before[index], after[:, index] = values[0], values[1:]
    rows = [
        (set_index, layer, pos, feature, float(v))
        for set_index, name in enumerate(names)
        for (layer, pos, feature), v in zip(sets[name], set_values[name])
    ]
    return GraphIntervention(
        set_names=tuple(names),
        features=torch.tensor([row[:4] for row in rows], dtype=torch.long).reshape(-1, 4),
        values=torch.tensor([float("nan") if scale is not None else row[4] for row in rows], dtype=torch.float32),
        scale=None if scale is None else float(scale),
        prompts=tuple(texts),
        target_name=target_name,
        before=before,
        after=after,
        provenance=Provenance(
            model_id=model_id(model),
            weights_hash=weights_hash(model),
            hooks=tuple(f"blocks.{layer}.{site}" for layer in sorted(by_layer) for site in TRANSCODER_SITES),
            extra={"transcoder_weights": ",".join(by_layer[layer].weights_hash for layer in sorted(by_layer))},
        ),
    )


def top_influence_features(graph: Graph, n: int, logit: int | str | None = None) -> list[tuple[int, int, int]]:
    """The ``n`` feature nodes of ``graph`` of largest influence on its logits, as ``(layer, position, feature)``.

    Influence: ``Σ_{k≥1} w N^k`` (``interp.graphs.prune``), ``N`` the row-normalised ``|adjacency|``, ``w`` the logit
    probabilities at the logit nodes, or, with ``logit`` (a token id or its text as the graph spells it), 1 at that
    logit node alone.
    """
    if n < 1:
        raise InterpError(f"n must be at least 1, got {n}.")
    if logit is None:
        weights = logit_weights(graph)
    else:
        if isinstance(logit, str):
            if logit not in graph.logit_strings:
                raise InterpError(f"no logit node {logit!r} in this graph; its logits: {list(graph.logit_strings)}.")
            logit = int(graph.logit_tokens[graph.logit_strings.index(logit)])
        weights = torch.zeros(graph.n_nodes, dtype=graph.adjacency.dtype)
        weights[graph.node_index("logit", index=logit)] = 1.0
    scores = influence(normalized_adjacency(graph.adjacency), weights)[graph.slice_of("feature")]
    order = scores.argsort(descending=True)[: min(n, graph.n_features)]
    return [_feature(graph.active_features[int(i)].tolist()) for i in order]


# ---- checks ---------------------------------------------------------------------------------------------------


def _feature_sets(features: FeatureSets) -> dict[str, list[tuple[int, int, int]]]:
    named = dict(features) if isinstance(features, Mapping) else {DEFAULT_SET_NAME: features}
    if not named:
        raise InterpError("give at least one intervention set.")
    sets = {}
    for name, members in named.items():
        if not isinstance(name, str) or not name:
            raise InterpError(f"an intervention set's name must be a non-empty string, got {name!r}.")
        chosen = [_feature(item) for item in members]
        if not chosen:
            raise InterpError(f"intervention set {name!r} has no features.")
        if len(set(chosen)) != len(chosen):
            raise InterpError(f"intervention set {name!r} names a feature twice; give each once.")
        sets[name] = chosen
    return sets


def _feature(item: Any) -> tuple[int, int, int]:
    if isinstance(item, Node):
        if item.kind != "feature":
            raise InterpError(f"only feature nodes can be intervened on, got a {item.kind} node ({item.label}).")
        return item.layer, item.position, item.item
    try:
        layer, position, feature = (int(part) for part in item)
    except (TypeError, ValueError):
        raise InterpError(
            f"a feature is (layer, position, feature index) or a graph's feature Node, got {item!r}."
        ) from None
    return layer, position, feature


def _set_values(sets: dict[str, list[tuple[int, int, int]]], value: Values) -> dict[str, list[float]]:
    per_set = dict(value) if isinstance(value, Mapping) else dict.fromkeys(sets, value)
    unknown = sorted(set(per_set) - set(sets))
    if unknown or set(sets) - set(per_set):
        raise InterpError(f"value= must name every intervention set ({list(sets)}); got {list(per_set)}.")
    values = {}
    for name, members in sets.items():
        given = per_set[name]
        chosen = [float(given)] * len(members) if isinstance(given, (int, float)) else [float(v) for v in given]
        if len(chosen) != len(members):
            raise InterpError(
                f"set {name!r} has {len(members)} features but {len(chosen)} values; give one per feature."
            )
        if not all(torch.isfinite(torch.tensor(chosen)).tolist()):
            raise InterpError(f"the values of set {name!r} must be finite numbers, got {chosen}.")
        values[name] = chosen
    return values


def _transcoders(
    model: Any, transcoders: Transcoders, sets: dict[str, list[tuple[int, int, int]]]
) -> dict[int, SparseDictionary]:
    by_layer = dict(transcoders) if isinstance(transcoders, Mapping) else dict(enumerate(transcoders))
    n_layers = int(model.cfg.n_layers)
    chosen: dict[int, SparseDictionary] = {}
    for layer, _, feature in (member for members in sets.values() for member in members):
        if not 0 <= layer < n_layers:
            raise InterpError(f"layer {layer} does not exist; the model has layers 0..{n_layers - 1}.")
        transcoder = by_layer.get(layer)
        if not isinstance(transcoder, SparseDictionary):
            raise InterpError(f"no transcoder (a SparseDictionary) for layer {layer}.")
        want = (f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out")
        if (transcoder.site, transcoder.output_site) != want:
            raise InterpError(
                f"layer {layer}'s transcoder reads {transcoder.site or '?'} and writes "
                f"{transcoder.output_site or '?'}; graph interventions need {want[0]} -> {want[1]}."
            )
        if not 0 <= feature < transcoder.d_sae:
            raise InterpError(
                f"feature {feature} does not exist; layer {layer}'s transcoder has latents 0..{transcoder.d_sae - 1}."
            )
        if layer not in chosen:
            transcoder.check_usable(model)
            chosen[layer] = transcoder
    return chosen


def _resolved(
    members: list[tuple[int, int, int]], values: list[float], n_pos: int, prompt: str
) -> list[tuple[int, int, int, float]]:
    """The set's edits with positions made absolute for a prompt of ``n_pos`` tokens."""
    edits = []
    for (layer, position, feature), value in zip(members, values):
        if not -n_pos <= position < n_pos:
            raise InterpError(f"position {position} is outside the prompt {prompt[:40]!r} ({n_pos} tokens).")
        edits.append((layer, position % n_pos, feature, value))
    return edits


def _target(model: Any, target: Metric | str | int) -> tuple[Callable[[Tensor], Tensor], str]:
    """The target as a function of one row's logits ``[1, pos, vocab]``, and its name."""
    if isinstance(target, (str, int)) and not isinstance(target, bool):
        token = one_token(target, model.tokenizer, "target") if isinstance(target, str) else int(target)
        vocab = int(model.cfg.d_vocab)
        if not 0 <= token < vocab:
            raise InterpError(f"target token id {token} is outside the vocabulary (0..{vocab - 1}).")
        return (lambda logits: last_logits(logits)[:, token]), f"logit {target!r}"
    if not callable(target):
        raise InterpError(
            f"target must be a token (text or id) or a metric of the logits, got {type(target).__name__}."
        )
    check_tokenizer(target, getattr(model, "tokenizer", None))
    return target, metric_name(target)


def _one_value(read_target: Callable[[Tensor], Tensor], logits: Tensor) -> Tensor:
    value = read_target(logits)
    if value.numel() != 1:
        raise InterpError(f"the target must give one value per prompt, got shape {tuple(value.shape)}.")
    return value.detach().float().cpu().reshape(())


def _edited_logits(
    model: Any,
    tokens: Int[Tensor, " pos"],
    by_layer: dict[int, SparseDictionary],
    edits: list[list[tuple[int, int, int, float]]],
    scale: float | None,
) -> Float[Tensor, "row pos vocab"]:
    """One forward of ``1 + len(edits)`` copies of the prompt: row 0 unedited, row ``1 + s`` with set ``s``'s edits."""
    batch = tokens[None].repeat(1 + len(edits), 1)
    seen: dict[int, Tensor] = {}

    def remember(layer: int):
        def keep(acts: Tensor, hook: Any = None) -> Tensor:
            seen[layer] = acts
            return acts

        return keep

    def edit(layer: int):
        transcoder = by_layer[layer]
        here = [
            (1 + set_index, pos, feature, value)
            for set_index, members in enumerate(edits)
            for member_layer, pos, feature, value in members
            if member_layer == layer
        ]
        rows = torch.tensor([row for row, _, _, _ in here])
        positions = torch.tensor([pos for _, pos, _, _ in here])
        features = torch.tensor([feature for _, _, feature, _ in here])
        values = torch.tensor([value for _, _, _, value in here])

        def add(acts: Tensor, hook: Any = None) -> Tensor:
            codes = transcoder.encode(seen.pop(layer)[rows.to(acts.device), positions.to(acts.device)].float())
            code = codes[torch.arange(len(here), device=codes.device), features.to(codes.device)]
            wanted = code * scale if scale is not None else values.to(code.device)
            decoder = transcoder.W_dec[features].to(code.device)
            out = acts.clone()
            out.index_put_(
                (rows.to(acts.device), positions.to(acts.device)),
                ((wanted - code)[:, None] * decoder).to(acts.dtype),
                accumulate=True,
            )
            return out

        return add

    layers = sorted({layer for members in edits for layer, _, _, _ in members})
    hooks = [(f"blocks.{layer}.ln2.hook_normalized", remember(layer)) for layer in layers]
    hooks += [(f"blocks.{layer}.hook_mlp_out", edit(layer)) for layer in layers]
    with model.hooks(fwd_hooks=hooks):
        return model(batch).float().cpu()
