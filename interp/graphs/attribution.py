"""``attribute``: the attribution graph of one prompt through per-layer transcoders (circuit tracing).

The model's MLPs are replaced by transcoders, its attention patterns and norm scales are frozen at their values on
the prompt, and error nodes hold what the transcoders miss (``interp.graphs.replacement``). In that frozen
replacement every target is affine in the node contributions, so the edge from source ``s`` to target ``t`` is::

    A[t, s] = ∂t/∂(mlp_out of s's layer, at s's position) · v_s

with ``v_s = a_s · W_dec[f]`` for a feature (activation times decoder row), the error vector for an error node and
the token vector (embedding, with any positional embedding) for a token node. The targets are a feature's encoder
pre-activation ``(x − b_dec) · W_enc[:, f] + b_enc[f]`` (``x`` its layer's ``ln2.hook_normalized``) and, for a logit
node, the demeaned logit ``logit_t − mean_v logit_v`` before any soft cap: as circuit-tracer, the gradient injected
for a logit is its unembedding column minus the mean column, ``W_U[:, t] − mean_v W_U[:, v]``.

Gradients are batched: one frozen forward on ``batch_size`` copies of the prompt, each row given its own target, one
``torch.autograd.grad`` per chunk of targets (the graph retained), read at every layer's ``mlp_out`` and at the
embedding.

Logit nodes: the most probable next tokens at the last position until their cumulative probability reaches
``desired_logit_prob``, at most ``max_logits``. Feature nodes: every active feature (nonzero code), or, with
``max_feature_nodes`` below their number, those of largest influence on the logits, chosen as circuit-tracer does:
the logit rows first, then repeatedly the not yet visited features of largest partial influence (the logit
probabilities propagated through the row-normalised |A| of the rows computed so far, over all path lengths),
``4 * batch_size`` at a time, until ``max_feature_nodes`` have rows.
"""

from collections.abc import Sequence
from typing import Any

import torch
from einops import einsum
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.graphs.graph import Graph
from interp.graphs.replacement import FrozenReplacement, Transcoders, freeze
from interp.progress import tqdm
from interp.provenance import Provenance

UPDATE_INTERVAL = 4  # batches of feature rows computed between two influence rankings (circuit-tracer's default)


def attribute(
    model: Any,
    prompt: str | Sequence[int] | Tensor,
    transcoders: Transcoders,
    max_feature_nodes: int | None = None,
    max_logits: int = 10,
    desired_logit_prob: float = 0.95,
    batch_size: int = 32,
    progress: bool = True,
) -> Graph:
    """The attribution graph of ``prompt`` (see the module docstring); ``transcoders``: one per layer (a list, or a
    dict by layer), each reading ``blocks.L.ln2.hook_normalized`` and predicting ``blocks.L.hook_mlp_out``."""
    if max_feature_nodes is not None and max_feature_nodes < 0:
        raise InterpError(f"max_feature_nodes must be >= 0 or None, got {max_feature_nodes}.")
    if max_logits < 1 or batch_size < 1:
        raise InterpError(f"max_logits and batch_size must be >= 1, got {max_logits} and {batch_size}.")
    if not 0 < desired_logit_prob <= 1:
        raise InterpError(f"desired_logit_prob must lie in (0, 1], got {desired_logit_prob}.")
    frozen = freeze(model, prompt, transcoders)
    with torch.enable_grad():
        return _attribute(
            model, frozen, prompt, max_feature_nodes, max_logits, desired_logit_prob, batch_size, progress
        )


def salient_logits(
    last_logits: Float[Tensor, " d_vocab"], max_logits: int, desired_logit_prob: float
) -> tuple[Int[Tensor, " logit"], Float[Tensor, " logit"]]:
    """The most probable tokens until their cumulative probability reaches ``desired_logit_prob`` (at most
    ``max_logits``), and their probabilities."""
    probabilities = torch.softmax(last_logits.double(), dim=-1)
    top_p, top_ids = probabilities.topk(min(max_logits, probabilities.shape[0]))
    cutoff = int(torch.searchsorted(top_p.cumsum(0), torch.tensor(desired_logit_prob, dtype=top_p.dtype))) + 1
    return top_ids[:cutoff], top_p[:cutoff].float()


class _Rows:
    """Computes rows of direct effects on batches of targets from one retained frozen forward."""

    def __init__(self, frozen: FrozenReplacement, features: Int[Tensor, "feature 3"], batch_size: int) -> None:
        self.frozen = frozen
        self.features = features
        self.batch_size = batch_size
        self.run = frozen.forward(batch=batch_size, requires_grad=True)
        layers = features[:, 0]
        self.layer_members = [torch.nonzero(layers == layer).flatten() for layer in range(frozen.n_layers)]
        self.decoder_vectors = [  # a_s * W_dec[f] of each layer's active features
            frozen.layers[layer].codes[features[members, 1], features[members, 2], None]
            * frozen.feature_vectors(layer, features[members, 2])
            for layer, members in enumerate(self.layer_members)
        ]
        W_U = frozen.W_U
        self.demeaned_unembed = W_U - W_U.mean(-1, keepdim=True)  # [d_model, d_vocab]
        b_U = frozen.b_U
        self.demeaned_bias = None if b_U is None else b_U - b_U.mean()
        self.n_columns = len(features) + (frozen.n_layers + 1) * frozen.n_pos

    def feature_targets(self, rows: Tensor) -> Float[Tensor, " row"]:
        """Encoder pre-activations of feature nodes ``rows`` (indices into ``features``), target i read from batch
        row i."""
        values = []
        for batch_row, node in enumerate(rows.tolist()):
            layer, pos, feature = self.features[node].tolist()
            transcoder = self.frozen.layers[layer].transcoder
            x = self.run.ln2_normalized[layer][batch_row, pos]
            if transcoder.apply_b_dec_to_input:
                x = x - transcoder.b_dec
            values.append(x @ transcoder.W_enc[:, feature] + transcoder.b_enc[feature])
        return torch.stack(values)

    def logit_targets(self, token_ids: Tensor) -> Float[Tensor, " row"]:
        """Demeaned logits ``logit_t − mean_v logit_v`` (before any soft cap) at the last position."""
        final = self.run.final_normalized[: len(token_ids), -1]
        values = einsum(final, self.demeaned_unembed[:, token_ids], "row d, d row -> row")
        return values if self.demeaned_bias is None else values + self.demeaned_bias[token_ids]

    def edges(self, targets: Float[Tensor, " row"]) -> Float[Tensor, "row column"]:
        """Row i: the direct effect of every source column ([features, errors (layer-major), tokens]) on target i."""
        frozen, n = self.frozen, len(targets)
        found = torch.autograd.grad(
            targets.sum(), [*self.run.mlp_injections, self.run.embed_injection], retain_graph=True, allow_unused=True
        )
        grads = [torch.zeros_like(self.run.embed_injection) if g is None else g for g in found]
        row = torch.zeros(n, self.n_columns)
        for layer, members in enumerate(self.layer_members):
            if len(members):
                at_positions = grads[layer][:n, self.features[members, 1]]  # [row, member, d_model]
                row[:, members] = einsum(at_positions, self.decoder_vectors[layer], "row m d, m d -> row m")
        start = len(self.features)
        for layer in range(frozen.n_layers):
            row[:, start : start + frozen.n_pos] = einsum(
                grads[layer][:n], frozen.layers[layer].error, "row pos d, pos d -> row pos"
            )
            start += frozen.n_pos
        row[:, start:] = einsum(grads[-1][:n], frozen.token_vectors, "row pos d, pos d -> row pos")
        return row.detach()


def partial_influences(
    rows: Float[Tensor, "row node"], logit_probabilities: Float[Tensor, " logit"], row_nodes: Int[Tensor, " row"]
) -> Float[Tensor, " node"]:
    """Influence on the logits of every node, from the rows computed so far: with ``N`` the row-normalised ``|rows|``
    and ``w`` the logit probabilities placed at the logit nodes, ``Σ_{k≥1} w N^k`` (a row's node given by
    ``row_nodes``; the logit nodes are the last columns)."""
    normalized = rows.abs()
    normalized = normalized / normalized.sum(-1, keepdim=True).clamp_min(1e-8)
    weights = torch.zeros(rows.shape[1])
    weights[-len(logit_probabilities) :] = logit_probabilities
    influence = torch.zeros(rows.shape[1])
    for _ in range(10_000):
        weights = weights[row_nodes] @ normalized
        if not weights.any():
            return influence
        influence += weights
    raise InterpError("the influence of the graph's nodes did not converge (a cycle in the adjacency).")


def _attribute(model, frozen, prompt, max_feature_nodes, max_logits, desired_logit_prob, batch_size, progress) -> Graph:
    from interp.model import model_id
    from interp.model.weights import weights_hash

    features = torch.cat(
        [
            torch.cat([torch.full((len(nz), 1), layer), nz], dim=1)
            for layer, nz in ((layer, torch.nonzero(frozen.layers[layer].codes)) for layer in range(frozen.n_layers))
        ]
    ).long()  # [feature, 3]: (layer, pos, feature), ascending
    n_all = len(features)
    keep = n_all if max_feature_nodes is None else min(max_feature_nodes, n_all)
    logit_ids, logit_p = salient_logits(frozen.real_logits[-1], max_logits, desired_logit_prob)
    rows = _Rows(frozen, features, batch_size)
    n_logits, n_columns = len(logit_ids), rows.n_columns
    logit_rows = torch.zeros(n_logits, n_columns + n_logits)
    for start in range(0, n_logits, batch_size):
        chunk = logit_ids[start : start + batch_size]
        logit_rows[start : start + len(chunk), :n_columns] = rows.edges(rows.logit_targets(chunk))
    feature_rows = torch.zeros(keep, n_columns + n_logits)
    visited = torch.zeros(n_all, dtype=torch.bool)
    order: list[int] = []
    bar = tqdm(total=keep, desc="attribution graph: feature rows", disable=not progress)
    while len(order) < keep:
        if keep == n_all:
            pending = torch.arange(n_all)
        else:
            computed = torch.cat([logit_rows, feature_rows[: len(order)]])
            row_nodes = torch.cat([torch.arange(n_logits) + n_columns, torch.tensor(order, dtype=torch.long)])
            influence = partial_influences(computed, logit_p, row_nodes)[:n_all]
            ranked = influence.argsort(descending=True)
            pending = ranked[~visited[ranked]][: min(UPDATE_INTERVAL * batch_size, keep - len(order))]
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            feature_rows[len(order) : len(order) + len(chunk), :n_columns] = rows.edges(rows.feature_targets(chunk))
            visited[chunk] = True
            order += chunk.tolist()
            bar.update(len(chunk))
    bar.close()
    selected = torch.tensor(sorted(order), dtype=torch.long)
    by_node = torch.zeros(n_all, dtype=torch.long)
    by_node[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    columns = torch.cat([selected, torch.arange(n_all, n_columns + n_logits)])
    n_nodes = len(columns)
    adjacency = torch.zeros(n_nodes, n_nodes)
    adjacency[: len(selected)] = feature_rows[by_node[selected]][:, columns]
    adjacency[n_nodes - n_logits :] = logit_rows[:, columns]
    chosen = features[selected]
    tokenizer = model.tokenizer
    return Graph(
        prompt=prompt if isinstance(prompt, str) else tokenizer.decode(frozen.tokens.tolist()),
        tokens=frozen.tokens,
        token_strings=tuple(tokenizer.decode([token]) for token in frozen.tokens.tolist()),
        n_layers=frozen.n_layers,
        active_features=chosen,
        activations=torch.stack([frozen.layers[layer].codes[pos, f] for layer, pos, f in chosen.tolist()])
        if len(chosen)
        else torch.zeros(0),
        logit_tokens=logit_ids,
        logit_strings=tuple(tokenizer.decode([token]) for token in logit_ids.tolist()),
        logit_probabilities=logit_p,
        adjacency=adjacency,
        n_active_features=n_all,
        feature_order="all" if keep == n_all else "logit influence",
        provenance=Provenance(
            model_id=model_id(model),
            weights_hash=weights_hash(model),
            hooks=tuple(
                f"blocks.{layer}.{site}"
                for layer in range(frozen.n_layers)
                for site in ("ln2.hook_normalized", "hook_mlp_out")
            ),
            extra={"transcoder_weights": ",".join(layer.transcoder.content_hash() for layer in frozen.layers)},
        ),
    )
