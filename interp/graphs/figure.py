"""The figure of an attribution graph (``Graph.figure``): the pruned graph drawn over the prompt.

Tokens run along x (their strings are the tick labels), layers up y: the token embeddings on the bottom row, one row
per layer, the logits on the top row (labelled with their token strings and probabilities, the most probable at
the last position). A feature or error node sits at (its position, its layer), the nodes sharing a cell spread along
x; error nodes are grey diamonds. Edges are lines whose width grows with |weight|, blue when positive and red when
negative. Every node's hover text gives its kind, layer, position, token, feature index, activation and influence on
the logits; with ``features`` (layer -> ``interp.dictionaries.evaluate.DictionaryEval`` of that layer's
transcoder), a feature's hover text also shows its top-activating contexts (the token marked) and the logits its
decoder row promotes.
"""

import html
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from interp.graphs.prune import compute_graph_scores, node_influence, prune_graph

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from interp.dictionaries.evaluate import DictionaryEval

Graph = Any  # an interp.graphs.Graph (not imported: Graph.figure imports this module)

KIND_STYLE = {  # kind -> (legend name, marker symbol, colour)
    "feature": ("feature nodes", "circle", "#ff7f0e"),
    "error": ("error nodes", "diamond", "#7f7f7f"),
    "token": ("token nodes", "square", "#17becf"),
    "logit": ("logit nodes", "star", "#9467bd"),
}
EDGE_COLOURS = {1: "rgba(31,119,180,0.5)", -1: "rgba(214,39,40,0.5)"}  # positive blue, negative red
WIDTH_LEVELS = 4  # edges are drawn in this many widths, by |weight| relative to the strongest drawn
CONTEXTS_SHOWN = 3
LOGITS_SHOWN = 5
CELL_ROW = 8  # nodes side by side in one (position, layer) cell before another row is stacked


def graph_figure(
    graph: "Graph",
    pruned: bool = True,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    features: "Mapping[int, DictionaryEval] | None" = None,
    max_edges: int = 500,
) -> "go.Figure":
    """The graph drawn as the module docstring says; ``pruned``: only the nodes and edges ``prune_graph`` keeps at
    ``node_threshold`` / ``edge_threshold`` (else every node and the nonzero edges); at most ``max_edges`` edges,
    the strongest by |weight|."""
    import plotly.graph_objects as go

    influences = node_influence(graph)
    if pruned:
        kept = prune_graph(graph, node_threshold=node_threshold, edge_threshold=edge_threshold)
        node_mask, edge_mask = kept.node_mask, kept.edge_mask & kept.node_mask[:, None] & kept.node_mask[None, :]
    else:
        node_mask = torch.ones(graph.n_nodes, dtype=torch.bool)
        edge_mask = graph.adjacency != 0
    xs, ys = node_coordinates(graph, node_mask, influences)
    figure = go.Figure()
    for trace in edge_traces(graph, edge_mask, xs, ys, max_edges):
        figure.add_trace(trace)
    nodes = graph.nodes
    strongest = float(influences[graph.slice_of("feature")].max()) if graph.n_features else 0.0
    for kind, (name, symbol, colour) in KIND_STYLE.items():
        members = [index for index in range(*graph.slice_of(kind).indices(graph.n_nodes)) if node_mask[index]]
        sizes = [_marker_size(graph, index, float(influences[index]), strongest) for index in members]
        figure.add_trace(
            go.Scatter(
                x=[xs[index] for index in members],
                y=[ys[index] for index in members],
                mode="markers+text" if kind == "logit" else "markers",
                marker={"symbol": symbol, "size": sizes, "color": colour, "line": {"width": 1, "color": "#333"}},
                text=[_logit_label(graph, index) for index in members] if kind == "logit" else None,
                textposition="top center",
                hovertext=[
                    node_hover(graph, nodes[index], index, float(influences[index]), features) for index in members
                ],
                hoverinfo="text",
                name=name,
            )
        )
    kept_features = int(node_mask[graph.slice_of("feature")].sum())
    replacement, completeness = compute_graph_scores(graph)
    shown = f"pruned at node threshold {node_threshold}, edge threshold {edge_threshold}" if pruned else "full"
    figure.update_layout(
        title=(
            f"Attribution graph of {_shown(repr(graph.prompt[:80]))}: {kept_features} of {graph.n_features} feature "
            f"nodes ({shown}); replacement score {replacement:.3f}, completeness {completeness:.3f}"
        ),
        xaxis={
            "title": {"text": "prompt token (position in the prompt)"},
            "tickmode": "array",
            "tickvals": list(range(graph.n_pos)),
            "ticktext": [_shown(text) for text in graph.token_strings],
            "range": [-0.7, graph.n_pos - 0.3],
            "zeroline": False,
        },
        yaxis={
            "title": {"text": "layer (token embeddings at the bottom, logits on top)"},
            "tickmode": "array",
            "tickvals": list(range(graph.n_layers + 2)),
            "ticktext": ["embeddings", *[f"layer {layer}" for layer in range(graph.n_layers)], "logits"],
            "range": [-0.6, graph.n_layers + 1.7],
            "zeroline": False,
        },
        hoverlabel={"align": "left"},
        height=max(500, 70 * (graph.n_layers + 2)),
        width=max(900, 110 * graph.n_pos),
        plot_bgcolor="white",
    )
    return figure


def node_coordinates(
    graph: "Graph", node_mask: torch.Tensor, influences: torch.Tensor
) -> tuple[list[float], list[float]]:
    """x and y of every node (those outside ``node_mask`` too): tokens on row 0, layer L on row L + 1, logits on the
    top row; the kept nodes of one cell spread along x (rows of ``CELL_ROW`` stacked within the layer's band when
    more), the most influential in the middle of the first row, the error node last."""
    nodes = graph.nodes
    xs = [float(node.position) for node in nodes]
    ys = [float(node.layer + 1) for node in nodes]
    cells: dict[tuple[int, int], list[int]] = {}
    for index in range(graph.slice_of("token").start):  # features and errors
        if node_mask[index]:
            cells.setdefault((nodes[index].layer, nodes[index].position), []).append(index)
    for members in cells.values():
        in_features = sorted((i for i in members if nodes[i].kind == "feature"), key=lambda i: -float(influences[i]))
        ordered = [*in_features, *(i for i in members if nodes[i].kind == "error")]
        n_rows = math.ceil(len(ordered) / CELL_ROW)  # a crowded cell stacks rows of CELL_ROW nodes
        for row in range(n_rows):
            in_row = ordered[row * CELL_ROW : (row + 1) * CELL_ROW]
            if row < n_rows - 1 or not in_row or nodes[in_row[-1]].kind != "error":
                in_row = _centre_out(in_row)
            else:  # the error node at the right end of the last row
                in_row = [*_centre_out(in_row[:-1]), in_row[-1]]
            step = min(0.8 / max(len(in_row) - 1, 1), 0.2)
            shift = 0.0 if n_rows == 1 else 0.5 * (row / (n_rows - 1) - 0.5)
            for slot, index in enumerate(in_row):
                xs[index] += (slot - (len(in_row) - 1) / 2) * step
                ys[index] += shift
    logits = graph.slice_of("logit")
    step = min(0.8, (graph.n_pos - 1 + 0.4) / max(graph.n_logits - 1, 1))
    for rank, index in enumerate(range(logits.start, logits.stop)):
        xs[index] = graph.n_pos - 1 - rank * step
        ys[index] = graph.n_layers + 1
    return xs, ys


def _centre_out(ordered: list[int]) -> list[int]:
    """``ordered`` rearranged so that its first items sit in the middle (left and right alternately)."""
    left: list[int] = []
    right: list[int] = []
    for rank, item in enumerate(ordered):
        (right if rank % 2 == 0 else left).append(item)
    return left[::-1] + right


def edge_traces(graph: "Graph", edge_mask: torch.Tensor, xs: list[float], ys: list[float], max_edges: int) -> list:
    """Lines for the strongest ``max_edges`` edges of ``edge_mask``: one trace per sign and width level."""
    import plotly.graph_objects as go

    weights = torch.where(edge_mask, graph.adjacency, torch.zeros_like(graph.adjacency))
    strength = weights.abs().flatten()
    count = min(max_edges, int((strength > 0).sum()))
    if count == 0:
        return []
    top = strength.topk(count)
    strongest = float(top.values[0])
    lines: dict[tuple[int, int], tuple[list[float | None], list[float | None]]] = {}
    for value, flat in zip(top.values.tolist(), top.indices.tolist()):
        target, source = divmod(flat, graph.n_nodes)
        sign = 1 if float(graph.adjacency[target, source]) > 0 else -1
        level = min(WIDTH_LEVELS, max(1, math.ceil(WIDTH_LEVELS * value / strongest)))
        line_x, line_y = lines.setdefault((sign, level), ([], []))
        line_x += [xs[source], xs[target], None]
        line_y += [ys[source], ys[target], None]
    traces: list[Any] = []
    for (sign, level), (line_x, line_y) in sorted(lines.items(), key=lambda item: (-item[0][0], item[0][1])):
        name = "positive edges" if sign > 0 else "negative edges"
        traces.append(
            go.Scatter(
                x=line_x,
                y=line_y,
                mode="lines",
                line={"color": EDGE_COLOURS[sign], "width": 0.6 + 1.4 * (level - 1)},
                hoverinfo="skip",
                name=name,
                legendgroup=name,
                showlegend=not any(trace.legendgroup == name for trace in traces),
            )
        )
    return traces


def _marker_size(graph: "Graph", index: int, influence: float, strongest: float) -> float:
    """Feature nodes grow with their influence, logit nodes with their probability."""
    if index < graph.n_features and strongest > 0:
        return 7 + 11 * math.sqrt(max(influence, 0.0) / strongest)
    if index >= graph.slice_of("logit").start:
        return 9 + 14 * float(graph.logit_probabilities[index - graph.slice_of("logit").start])
    return 10


def _logit_label(graph: "Graph", index: int) -> str:
    rank = index - graph.slice_of("logit").start
    return f"{_shown(graph.logit_strings[rank])} {float(graph.logit_probabilities[rank]):.2g}"


def node_hover(
    graph: "Graph", node: Any, index: int, influence: float, features: "Mapping[int, DictionaryEval] | None" = None
) -> str:
    """A node's hover text: kind, layer, position, token, feature index, activation, influence (and, for a feature
    of a layer in ``features``, its top contexts and promoted logits)."""
    token = _shown(graph.token_strings[node.position])
    layer = {"token": "embeddings", "logit": "logits"}.get(node.kind, str(node.layer))
    lines = [f"<b>{node.kind} node</b>", f"layer: {layer}", f"position: {node.position}", f"token: {token}"]
    if node.kind == "feature":
        lines.append(f"feature index: {node.item}")
        lines.append(f"activation: {float(graph.activations[index]):.4g}")
    elif node.kind == "token":
        lines.append(f"token id: {node.item}")
    elif node.kind == "logit":
        rank = index - graph.slice_of("logit").start
        lines.append(f"predicted token: {_shown(graph.logit_strings[rank])} (id {node.item})")
        lines.append(f"probability: {float(graph.logit_probabilities[rank]):.4g}")
    else:
        lines.append("what the layer's transcoder misses here")
    if node.kind != "logit":
        lines.append(f"influence on the logits: {influence:.4g}")
    if node.kind == "feature" and features is not None and node.layer in features:
        lines += feature_lines(features[node.layer], node.item)
    return "<br>".join(lines)


def feature_lines(evaluation: "DictionaryEval", feature: int) -> list[str]:
    """A feature's top-activating contexts (the token marked) and the logits its decoder row promotes, as hover
    lines; none when ``evaluation`` has no such feature."""
    if not 0 <= feature < len(evaluation.frequency):
        return []
    lines = ["<b>top contexts</b>:"]
    contexts = evaluation.contexts(feature)[:CONTEXTS_SHOWN]
    lines += [
        f"  {_shown(before)}<b>[{_shown(token)}]</b>{_shown(after)} ({value:.3g})"
        for value, before, token, after in contexts
    ] or ["  (it never fired on the evaluation's prompts)"]
    promoted = list(zip(evaluation.promoted_ids[feature].tolist(), evaluation.promoted_values[feature].tolist()))
    shown = ", ".join(f"{_shown(evaluation.token(token))} ({value:+.3g})" for token, value in promoted[:LOGITS_SHOWN])
    lines.append(f"<b>promoted logits</b>: {shown}")
    return lines


def _shown(text: str) -> str:
    """Text as hover and tick labels show it: HTML-escaped, line breaks as ⏎."""
    return html.escape(text).replace("\n", "⏎")
