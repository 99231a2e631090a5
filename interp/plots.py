"""Plotly figure builders shared by the analyses: readable axes, token/prompt strings in hover text."""

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from interp.report import screenshot  # noqa: F401  (defined here before; still importable from here)

FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=13)


def short(text: str, width: int = 80) -> str:
    """One line, at most ``width`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def style(figure: go.Figure, title: str, x_title: str, y_title: str) -> go.Figure:
    figure.update_layout(
        title=dict(text=title, x=0.01, xanchor="left"),
        xaxis_title=x_title,
        yaxis_title=y_title,
        font=FONT,
        template="plotly_white",
        margin=dict(l=70, r=30, t=60, b=60),
    )
    return figure


def prompt_layer_heatmap(
    values: np.ndarray, prompts: Sequence[str], layers: Sequence[int], title: str, colorbar_title: str
) -> go.Figure:
    """values[prompt, layer] as a heatmap; hover shows the prompt text."""
    hover = [
        [
            f"prompt {i}: {short(p)}<br>layer {layer}<br>{colorbar_title}: {values[i, j]:.4g}"
            for j, layer in enumerate(layers)
        ]
        for i, p in enumerate(prompts)
    ]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=[str(layer) for layer in layers],
            y=[f"{i}: {short(p, 24)}" for i, p in enumerate(prompts)],
            text=hover,
            hoverinfo="text",
            colorscale="Viridis",
            colorbar=dict(title=colorbar_title),
        )
    )
    return style(figure, title, "layer", "prompt")


def activation_norms_figure(
    kind: str, layers: Sequence[int], prompts: Sequence[str], values: np.ndarray, positions, model_id: str
) -> go.Figure:
    """An activation store's overview: ``values[prompt, layer]``, the L2 norm at site ``kind``
    (``ActivationStore.norms()``).

    >>> figure = activation_norms_figure("resid_post", [0, 1], ["a", "b"], np.ones((2, 2)), "last", "gpt2")
    >>> figure.data[0].x, figure.layout.title.text
    (('0', '1'), '‖resid_post‖ at positions=last — gpt2')
    """
    return prompt_layer_heatmap(
        np.asarray(values),
        prompts=prompts,
        layers=layers,
        title=f"‖{kind}‖ at positions={positions} — {model_id}",
        colorbar_title="L2 norm",
    )


# ---- harm-weight pruning -------------------------------------------------------------------------


def layer_module_heatmap(
    values: np.ndarray, layers: Sequence[int], modules: Sequence[str], title: str, colorbar_title: str
) -> go.Figure:
    """values[layer, module] as a heatmap (layers on y, weight matrices such as attn.q or mlp.out on x)."""
    hover = [
        [f"layer {layer}<br>{module}<br>{colorbar_title}: {values[i, j]:.4g}" for j, module in enumerate(modules)]
        for i, layer in enumerate(layers)
    ]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=list(modules),
            y=[str(layer) for layer in layers],
            text=hover,
            hoverinfo="text",
            colorscale="Viridis",
            colorbar=dict(title=colorbar_title),
        )
    )
    return style(figure, title, "weight matrix", "layer")


def harm_utility_figure(
    series: dict[str, dict[str, list]], harm_metric: str, utility_metric: str, title: str
) -> go.Figure:
    """Harm (left) and utility (right) against the share of decoder weights pruned, one line per mask kind.

    ``series[kind]`` holds lists ``x`` (% pruned), ``harm``, ``utility`` and ``labels`` (hover text).
    """
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=(harm_metric, utility_metric), horizontal_spacing=0.12)
    palette = ("#d62728", "#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b")
    for index, (kind, data) in enumerate(series.items()):
        color = palette[index % len(palette)]
        for column, metric in ((1, "harm"), (2, "utility")):
            figure.add_trace(
                go.Scatter(
                    x=data["x"],
                    y=data[metric],
                    mode="lines+markers",
                    name=kind,
                    legendgroup=kind,
                    showlegend=column == 1,
                    line=dict(color=color, dash="solid" if kind != "random" else "dot"),
                    text=data["labels"],
                    hovertemplate="%{text}<br>% pruned: %{x:.3g}<br>%{y:.4g}<extra>" + kind + "</extra>",
                ),
                row=1,
                col=column,
            )
    figure.update_xaxes(title_text="% of decoder weights pruned")
    style(figure, title, "% of decoder weights pruned", harm_metric)
    figure.update_yaxes(title_text=utility_metric, row=1, col=2)
    return figure


def overlap_figure(
    pairs: Sequence[str],
    observed: Sequence[float],
    chance: Sequence[float],
    title: str,
    y_title: str = "weights in both masks",
) -> go.Figure:
    """Observed mask intersections next to their chance level, one group per pair of masks."""
    figure = go.Figure(
        [
            go.Bar(name="observed", x=list(pairs), y=list(observed), marker_color="#d62728"),
            go.Bar(name="chance (random placement)", x=list(pairs), y=list(chance), marker_color="#7f7f7f"),
        ]
    )
    figure.update_layout(barmode="group")
    return style(figure, title, "masks compared", y_title)


def diverging_heatmap(
    values: np.ndarray,
    x_labels: Sequence[str],
    y_labels: Sequence[str],
    hover: Sequence[Sequence[str]],
    title: str,
    x_title: str,
    y_title: str,
    colorbar_title: str,
    zmid: float = 0.0,
) -> go.Figure:
    """values[y, x] as a heatmap on a diverging scale centred at ``zmid``; ``hover[y][x]`` is shown on hover.

    Labels must be unique (they name categorical axes); the first row is drawn at the top.
    """
    values = np.asarray(values, dtype=float)
    spread = float(np.nanmax(np.abs(values - zmid))) if values.size and np.isfinite(values).any() else 1.0
    spread = spread or 1.0
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=list(x_labels),
            y=list(y_labels),
            text=[list(row) for row in hover],
            hoverinfo="text",
            colorscale="RdBu",
            reversescale=True,
            zmin=zmid - spread,
            zmax=zmid + spread,
            zmid=zmid,
            colorbar=dict(title=colorbar_title),
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category", tickangle=-45 if len(x_labels) > 12 else 0)
    return style(figure, title, x_title, y_title)


def line_plot(
    x: Sequence[str],
    series: dict[str, Sequence[float]],
    hover: Sequence[str],
    title: str,
    x_title: str,
    y_title: str,
    reference_lines: dict[str, float] | None = None,
) -> go.Figure:
    """One line per series over categorical ``x``, with dashed horizontal reference lines (e.g. baselines)."""
    figure = go.Figure()
    for name, ys in series.items():
        figure.add_trace(
            go.Scatter(x=list(x), y=list(ys), mode="lines+markers", name=name, text=list(hover), hoverinfo="text")
        )
    for name, level in (reference_lines or {}).items():
        figure.add_hline(
            y=level, line_dash="dash", line_color="gray", annotation_text=name, annotation_position="top left"
        )
    figure.update_xaxes(type="category")
    return style(figure, title, x_title, y_title)


def lens_heatmap(
    values: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    cell_text: Sequence[Sequence[str]],
    hover: Sequence[Sequence[str]],
    title: str,
    x_title: str,
    colorbar_title: str,
    reverse_scale: bool = False,
) -> go.Figure:
    """A layer x column heatmap with the top token written in each cell (depth grows upwards)."""
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=list(columns),
            y=list(rows),
            text=[[str(t) for t in row] for row in cell_text],
            texttemplate="%{text}",
            textfont=dict(size=10),
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale="Blues_r" if reverse_scale else "Blues",
            colorbar=dict(title=colorbar_title),
        )
    )
    figure = style(figure, title, x_title, "layer / site")
    figure.update_layout(height=max(360, 26 * len(rows) + 140))
    return figure


def lens_kl_figure(
    sites: Sequence[str],
    series: Mapping[str, Sequence[float]],
    errors: Mapping[str, Sequence[float]],
    title: str,
    log_y: bool = True,
) -> go.Figure:
    """KL to the final distribution per layer, one line per lens (logit lens, tuned lens), with error bars.

    On a log axis a KL of 0 (the last layer, the final distribution itself) is left out of the line.

    >>> figure = lens_kl_figure(["embed", "L0", "L1"], {"logit lens": [5.0, 1.0, 0.0]},
    ...                         {"logit lens": [0.1, 0.1, 0.0]}, title="t")
    >>> figure.data[0].name, figure.data[0].x, figure.data[0].y
    ('logit lens', ('embed', 'L0', 'L1'), (5.0, 1.0, None))
    """
    figure = go.Figure()
    for name, values in series.items():
        spread = list(errors.get(name, [0.0] * len(values)))
        hover = [
            f"{name} · {site}<br>KL {value:.4g} ± {error:.2g} nats" for site, value, error in zip(sites, values, spread)
        ]
        shown = [None if log_y and value <= 0 else value for value in values]
        figure.add_trace(go.Scatter(x=list(sites), y=shown, error_y=dict(type="data", array=spread, visible=True),
                                    mode="lines+markers", name=name, text=hover, hoverinfo="text"))  # fmt: skip
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="log" if log_y else "linear")
    return style(figure, title, "layer (residual stream after it)", "KL(final ‖ lens), nats")


# ---- linear probes -------------------------------------------------------------------------------

_PROBE_COLOURS = {"accuracy": "#1f77b4", "auroc": "#d62728", "log_loss": "#2ca02c"}
_PROBE_PANELS = (("auroc", 1), ("accuracy", 1), ("log_loss", 2))  # metric, column


def probe_figure(
    layers: Sequence[str],
    cv_interval: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    cv_folds: Mapping[str, np.ndarray],
    holdout: Mapping[str, np.ndarray],
    diff_means_auroc: np.ndarray,
    projection: np.ndarray,
    label: np.ndarray,
    held_out: np.ndarray,
    probability: np.ndarray,
    texts: Sequence[str],
    label_names: tuple[str, str],
    hook: str,
    title: str,
) -> go.Figure:
    """Probe metrics per layer (CV mean with 95% interval, single folds, held-out) and a 2-D projection of the prompts.

    Args:
        layers: the x labels, one per layer.
        cv_interval: per metric ("accuracy", "auroc", "log_loss"): (mean, low, high), each ``[layer]``.
        cv_folds: per metric, the single folds ``[layer, fold]``; holdout: per metric, ``[layer]``.
        diff_means_auroc: ``[layer]``, the CV AUROC of the difference-of-means direction.
        projection: ``[prompt, 2]`` at ``hook``; label: ``[prompt]`` 0/1; held_out: ``[prompt]`` bool;
            probability: ``[prompt]`` out-of-fold P(``label_names[1]``); texts: the prompts (hover).
    """
    from plotly.subplots import make_subplots

    x = list(layers)
    n_folds = int(np.asarray(next(iter(cv_folds.values()))).shape[-1])
    figure = make_subplots(rows=1, cols=3, column_widths=[0.38, 0.24, 0.38],
                           subplot_titles=(f"accuracy / AUROC ({n_folds}-fold CV, 95% interval)", "log-loss",
                                           f"h_last at {hook}"))  # fmt: skip
    for metric, col in _PROBE_PANELS:
        centre, low, high = (np.asarray(part) for part in cv_interval[metric])
        colour = _PROBE_COLOURS[metric]
        error = dict(type="data", symmetric=False, array=(high - centre).tolist(), arrayminus=(centre - low).tolist())
        traces = [
            go.Scatter(x=x, y=centre.tolist(), mode="lines+markers", name=f"CV {metric}", legendgroup=metric,
                       line=dict(color=colour), error_y=error,
                       hovertemplate="layer %{x}<br>" + metric + " %{y:.3f}<extra>CV mean</extra>"),
            go.Scatter(x=[label for label in x for _ in range(n_folds)],
                       y=np.asarray(cv_folds[metric]).flatten().tolist(), mode="markers",
                       name=f"{metric}, single folds", legendgroup=metric, showlegend=False, opacity=0.35,
                       marker=dict(color=colour, size=5),
                       hovertemplate="layer %{x}<br>" + metric + " %{y:.3f}<extra>one fold</extra>"),
            go.Scatter(x=x, y=np.asarray(holdout[metric]).tolist(), mode="markers", name=f"held-out {metric}",
                       legendgroup=metric, marker=dict(color=colour, symbol="diamond-open", size=9),
                       hovertemplate="layer %{x}<br>" + metric + " %{y:.3f}<extra>held-out</extra>"),
        ]  # fmt: skip
        for trace in traces:
            figure.add_trace(trace, row=1, col=col)
    figure.add_trace(
        go.Scatter(x=x, y=np.asarray(diff_means_auroc).tolist(), mode="lines", name="CV AUROC, diff-of-means",
                   line=dict(color=_PROBE_COLOURS["auroc"], dash="dot"),
                   hovertemplate="layer %{x}<br>AUROC %{y:.3f}<extra>difference of means</extra>"),
        row=1, col=1,
    )  # fmt: skip
    projection, label, held_out = np.asarray(projection), np.asarray(label), np.asarray(held_out, dtype=bool)
    for cls in (0, 1):
        for split, symbol in (("cv", "circle"), ("held-out", "diamond")):
            rows = np.flatnonzero((label == cls) & (held_out if split == "held-out" else ~held_out)).tolist()
            if not rows:
                continue
            figure.add_trace(
                go.Scatter(
                    x=projection[rows, 0].tolist(), y=projection[rows, 1].tolist(), mode="markers",
                    name=f"{label_names[cls]} ({split})",
                    marker=dict(color=("#1f77b4", "#d62728")[cls], symbol=symbol, size=6, opacity=0.7),
                    hovertext=[short(texts[j], 200) for j in rows],
                    customdata=[[label_names[cls], float(probability[j])] for j in rows],
                    hovertemplate="%{hovertext}<br>label %{customdata[0]}"
                    f"<br>P({label_names[1]}) %{{customdata[1]:.3f}}<extra></extra>",
                ),
                row=1, col=3,
            )  # fmt: skip
    style(figure, title, "layer", "accuracy / AUROC")
    figure.update_yaxes(range=[0, 1.02], row=1, col=1)
    figure.update_xaxes(title_text="layer", type="category", row=1, col=2)
    figure.update_xaxes(type="category", row=1, col=1)
    figure.update_yaxes(title_text="log-loss (nats)", row=1, col=2)
    figure.update_xaxes(title_text="difference-of-means direction (standardised)", row=1, col=3)
    figure.update_yaxes(title_text="top principal component orthogonal to it", row=1, col=3)
    figure.update_layout(height=480, width=1500)
    return figure


# ---- chain-of-thought resampling -----------------------------------------------------------------

SENTENCE_AXIS = "sentence index in the chain of thought"


def wrap_html(text: str, width: int = 80) -> str:
    """``text`` HTML-escaped and wrapped into lines of ``width`` for hover text."""
    import html
    import textwrap

    return "<br>".join(textwrap.wrap(html.escape(text), width)) or "(empty)"


def sentence_metric_figure(
    sentences: Sequence[str], values: np.ndarray, name: str, axis_title: str, also: Mapping[str, np.ndarray], title: str
) -> go.Figure:
    """One bar per sentence (red below zero); hover shows the sentence, the value and the metrics in ``also``."""
    values = np.asarray(values, dtype=np.float64)
    hover = [
        f"<b>sentence {i}</b><br>{wrap_html(s)}<br>{name}: {v:.4g}"
        + "".join(f"<br>{k}: {float(other[i]):.3g}" for k, other in also.items())
        for i, (s, v) in enumerate(zip(sentences, values))
    ]
    colors = ["#d62728" if v < 0 else "#1f77b4" for v in np.nan_to_num(values)]
    figure = go.Figure(
        go.Bar(
            x=list(range(len(sentences))), y=values, marker_color=colors, hovertext=hover, hoverinfo="text", name=name
        )
    )
    style(figure, title, SENTENCE_AXIS, axis_title)
    figure.update_layout(hoverlabel={"align": "left"})
    return figure


def sentence_graph_figure(sentences: Sequence[str], matrix: np.ndarray, top_k: int = 40) -> go.Figure:
    """Nodes along the chain; arcs for the ``top_k`` strongest entries ``matrix[i, j]`` (i < j), blue positive, red
    negative.

    Node size grows with the total outgoing |importance|; hovering a node shows its sentence.
    """
    mat = np.nan_to_num(np.asarray(matrix, dtype=np.float64))
    n = len(sentences)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if mat[i, j] != 0]
    pairs.sort(key=lambda ij: -abs(mat[ij]))
    pairs = pairs[:top_k]
    biggest = max((abs(mat[ij]) for ij in pairs), default=1.0) or 1.0
    figure = go.Figure()
    for i, j in pairs:
        w = mat[i, j]
        t = np.linspace(0, 1, 30)
        figure.add_trace(
            go.Scatter(
                x=i + (j - i) * t, y=np.sin(np.pi * t) * (j - i) ** 0.5, mode="lines", hoverinfo="text",
                text=f"{i} → {j}: {w:+.3f}",
                line={"color": "#1f77b4" if w > 0 else "#d62728", "width": 1 + 5 * abs(w) / biggest},
                opacity=0.3 + 0.7 * abs(w) / biggest, showlegend=False,
            )
        )  # fmt: skip
    outgoing = np.abs(mat).sum(axis=1)
    figure.add_trace(
        go.Scatter(
            x=list(range(n)), y=[0.0] * n, mode="markers", name="sentences",
            marker={"size": 6 + 14 * outgoing / (outgoing.max() or 1.0), "color": "#444"},
            hovertext=[f"<b>sentence {i}</b><br>{wrap_html(s)}<br>total outgoing |importance|: {o:.3g}"
                       for i, (s, o) in enumerate(zip(sentences, outgoing))],
            hoverinfo="text",
        )
    )  # fmt: skip
    style(
        figure,
        f"sentence-to-sentence importance (top {len(pairs)} links; blue: keeping the earlier "
        "sentence makes the later one more likely, red: less likely)",
        SENTENCE_AXIS,
        "",
    )
    figure.update_layout(yaxis={"visible": False}, hoverlabel={"align": "left"})
    return figure


# ---- direct logit attribution and attention patterns ---------------------------------------------


def dla_figure(
    components: Sequence[str],
    component_values: np.ndarray,
    head_values: np.ndarray | None,
    component_hover: Sequence[str],
    head_hover: Sequence[Sequence[str]] | None,
    title: str,
    value_title: str,
) -> go.Figure:
    """Bars of ``component_values[component]`` (red below zero) and, when given, a layer x head heatmap of
    ``head_values[layer, head]``.

    >>> figure = dla_figure(["embed", "L0 attn"], np.array([0.5, -1.0]), np.array([[0.2, -1.2]]), ["e", "a"],
    ...                     [["h0", "h1"]], "DLA", "logit")
    >>> figure.data[0].x, figure.data[1].x, figure.data[1].y
    (('embed', 'L0 attn'), ('H0', 'H1'), ('L0',))
    """
    from plotly.subplots import make_subplots

    values = np.asarray(component_values, dtype=float)
    columns = 1 if head_values is None else 2
    titles = ("per component", "per attention head")[:columns]
    figure = make_subplots(
        rows=1,
        cols=columns,
        subplot_titles=titles,
        horizontal_spacing=0.1,
        column_widths=[0.55, 0.45][:columns] if columns == 2 else None,
    )
    colors = ["#d62728" if v < 0 else "#1f77b4" for v in np.nan_to_num(values)]
    figure.add_trace(
        go.Bar(
            x=list(components),
            y=values,
            marker_color=colors,
            hovertext=list(component_hover),
            hoverinfo="text",
            name="component",
        ),
        row=1,
        col=1,
    )
    figure.update_xaxes(
        type="category", tickangle=-45 if len(components) > 12 else 0, title_text="component", row=1, col=1
    )
    figure.update_yaxes(title_text=value_title, row=1, col=1)
    if head_values is not None:
        heads = np.asarray(head_values, dtype=float)
        spread = float(np.nanmax(np.abs(heads))) if heads.size and np.isfinite(heads).any() else 1.0
        spread = spread or 1.0
        figure.add_trace(
            go.Heatmap(
                z=heads, x=[f"H{h}" for h in range(heads.shape[1])], y=[f"L{layer}" for layer in range(heads.shape[0])],
                text=[list(row) for row in (head_hover or [])], hoverinfo="text", colorscale="RdBu", reversescale=True,
                zmin=-spread, zmax=spread, zmid=0.0, colorbar=dict(title=value_title), name="heads",
            ),
            row=1, col=2,
        )  # fmt: skip
        figure.update_xaxes(type="category", title_text="head", row=1, col=2)
        figure.update_yaxes(type="category", title_text="layer", row=1, col=2)
    style(figure, title, "component", value_title)
    figure.update_layout(
        showlegend=False,
        height=max(420, 18 * (0 if head_values is None else np.asarray(head_values).shape[0]) + 160),
        width=1300 if columns == 2 else 800,
    )
    return figure


def attention_pattern_figure(pattern: np.ndarray, tokens: Sequence[str], title: str) -> go.Figure:
    """``pattern[query, key]`` as a heatmap over the prompt's tokens; hover reads ``query 'tok' -> key 'tok': weight``.

    >>> figure = attention_pattern_figure(np.array([[1.0, 0.0], [0.25, 0.75]]), ["a", " b"], "L0H0")
    >>> figure.data[0].x, figure.data[0].text[1][0]
    (("0: 'a'", "1: ' b'"), "query 1 ' b' -> key 0 'a': 0.25")
    """
    values = np.asarray(pattern, dtype=float)
    labels = [f"{i}: {token!r}" for i, token in enumerate(tokens)]
    hover = [
        [f"query {q} {tokens[q]!r} -> key {k} {tokens[k]!r}: {values[q, k]:.3g}" for k in range(values.shape[1])]
        for q in range(values.shape[0])
    ]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=labels,
            y=labels,
            text=hover,
            hoverinfo="text",
            colorscale="Blues",
            zmin=0.0,
            zmax=1.0,
            colorbar=dict(title="attention"),
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category", tickangle=-45 if len(tokens) > 8 else 0)
    style(figure, title, "key (attended-to) token", "query token")
    side = max(420, 22 * len(tokens) + 200)
    figure.update_layout(height=side, width=side + 120)
    return figure


# ---- induction heads -----------------------------------------------------------------------------


def head_score_heatmap(
    values: np.ndarray,
    hover: Sequence[Sequence[str]],
    cell_text: Sequence[Sequence[str]],
    title: str,
    colorbar_title: str,
    zmin: float = 0.0,
    zmax: float = 1.0,
) -> go.Figure:
    """``values[layer, head]`` as a heatmap on ``[zmin, zmax]`` (layer 0 at the bottom), ``cell_text`` in the cells,
    ``hover`` on hover.

    >>> figure = head_score_heatmap(np.array([[0.1, 0.9]]), [["a", "b"]], [["", "1"]], "induction", "score")
    >>> figure.data[0].x, figure.data[0].y, figure.data[0].customdata[0][1]
    (('H0', 'H1'), ('L0',), 'b')
    """
    values = np.asarray(values, dtype=float)
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=[f"H{h}" for h in range(values.shape[1])],
            y=[f"L{layer}" for layer in range(values.shape[0])],
            text=[list(row) for row in cell_text],
            texttemplate="%{text}",
            textfont=dict(size=10),
            customdata=[list(row) for row in hover],
            hovertemplate="%{customdata}<extra></extra>",
            colorscale="Viridis",
            zmin=zmin,
            zmax=zmax,
            colorbar=dict(title=colorbar_title),
        )
    )
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    style(figure, title, "head", "layer")
    figure.update_layout(height=max(420, 22 * values.shape[0] + 160), width=max(520, 60 * values.shape[1] + 260))
    return figure
