"""A dictionary's feature dashboard: one offline HTML page, the frequency histogram on top and a card per feature
(frequency, top-activating contexts with the token marked, the logits it promotes and suppresses)."""

import html
import math
from pathlib import Path

import plotly.graph_objects as go

from interp.io import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; margin: 0.6em 0; }
.card h3 { margin: 0.2em 0; font-size: 1em; }
.ctx { font-family: ui-monospace, monospace; font-size: 0.85em; white-space: pre-wrap; margin: 0.15em 0; }
mark { background: #fd8; padding: 0 1px; }
.logits { font-family: ui-monospace, monospace; font-size: 0.85em; color: #333; }
.muted { color: #777; font-size: 0.85em; }
"""


def frequency_figure(evaluation) -> go.Figure:
    """How often each latent fires (log10 of its share of tokens), and the summary in the title."""
    frequency = evaluation.frequency.float()
    alive = frequency[frequency > 0]
    figure = go.Figure(
        go.Histogram(
            x=alive.log10().tolist(),
            nbinsx=50,
            name="latents",
            hovertemplate="log10 frequency %{x}<br>%{y} latents<extra></extra>",
        )
    )
    dead = int((frequency == 0).sum())
    figure.update_layout(
        title=(
            f"{evaluation.site}: FVU {evaluation.fvu:.3f}, L0 {evaluation.l0:.1f}, CE loss recovered "
            f"{evaluation.ce_loss_recovered:.3f}, {dead} dead of {len(frequency)} latents"
        ),
        xaxis_title="log10 of the share of tokens a latent fires on",
        yaxis_title="latents",
    )
    return figure


def write_dashboard(evaluation, path: str | Path, features=None, limit: int = 300) -> Path:
    """Write the dashboard of ``features`` (default: the ``limit`` most frequent live latents) to ``path``."""
    path = Path(path)
    if features is None:
        order = evaluation.frequency.argsort(descending=True).tolist()
        features = [f for f in order if float(evaluation.frequency[f]) > 0][:limit]
    cards = "\n".join(_card(evaluation, int(feature)) for feature in features)
    histogram = frequency_figure(evaluation).to_html(include_plotlyjs=True, full_html=False)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Features of {html.escape(evaluation.site)}"
        f"</title><style>{_STYLE}</style></head><body><h1>Features of {html.escape(evaluation.site)}</h1>"
        f"<p class='muted'>{html.escape(evaluation.summary())}</p>{histogram}"
        f"<h2>{len(features)} features</h2>{cards}</body></html>"
    )
    atomic_write_text(path, page)
    return path


def _card(evaluation, feature: int) -> str:
    frequency = float(evaluation.frequency[feature])
    contexts = "".join(
        f"<div class='ctx'>{value:.2f} &nbsp; {html.escape(before)}<mark>{html.escape(token)}</mark>"
        f"{html.escape(after)}</div>"
        for value, before, token, after in evaluation.contexts(feature)
    )
    promoted = ", ".join(
        f"{html.escape(repr(evaluation.token(t)))} {v:+.2f}"
        for t, v in zip(evaluation.promoted_ids[feature].tolist(), evaluation.promoted_values[feature].tolist())
    )
    suppressed = ", ".join(
        f"{html.escape(repr(evaluation.token(t)))} {v:+.2f}"
        for t, v in zip(evaluation.suppressed_ids[feature].tolist(), evaluation.suppressed_values[feature].tolist())
    )
    shown = f"{frequency:.2%}" if frequency >= 1e-4 else f"10^{math.log10(frequency):.1f}" if frequency else "never"
    return (
        f"<div class='card' id='f{feature}'><h3>feature {feature}</h3><span class='muted'>fires on {shown} of "
        f"tokens, max {float(evaluation.max_activation[feature]):.2f}</span>"
        f"{contexts or '<p class=muted>no firing</p>'}"
        f"<div class='logits'>promotes: {promoted}</div><div class='logits'>suppresses: {suppressed}</div></div>"
    )
