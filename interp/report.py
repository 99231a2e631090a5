"""A self-contained HTML report: sections of text, numbers and Plotly figures, plotly.js inlined once.

>>> import plotly.graph_objects as go
>>> section = Section("Logit lens", "Where the answer appears.", figures=(go.Figure(),), numbers={"layers": 4})
>>> html = render_report("demo", [section])
>>> html.count("<script type=\\"text/javascript\\">/**") <= 1 and "Logit lens" in html
True

The page works offline: it loads nothing from the network.
"""

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import plotly.graph_objects as go

from interp.io import atomic_write_text

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
p.lead { color: #555; } .explain { color: #333; line-height: 1.5; }
table.numbers { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
table.numbers td { border: 1px solid #ddd; padding: 0.25em 0.7em; } table.numbers td:first-child { color: #555; }
nav a { margin-right: 1em; } .figure { margin: 1em 0; } footer { margin-top: 3em; color: #777; font-size: 0.85em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


@dataclass(frozen=True)
class Section:
    """One analysis in the report: a title, what it shows, its key numbers and its figures."""

    title: str
    explanation: str
    figures: Sequence[go.Figure] = ()
    numbers: Mapping[str, Any] = field(default_factory=dict)
    anchor: str = ""
    code: str = ""

    @property
    def slug(self) -> str:
        return self.anchor or "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, dict)):
        return html.escape(json.dumps(value, default=str))
    return html.escape(str(value))


def render_report(title: str, sections: Sequence[Section], subtitle: str = "", footer: str = "") -> str:
    """The report as one HTML string (plotly.js inlined once in the head)."""
    from plotly.offline import get_plotlyjs

    body = [f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="lead">{html.escape(subtitle)}</p>')
    body.append("<nav>" + "".join(f'<a href="#{s.slug}">{html.escape(s.title)}</a>' for s in sections) + "</nav>")
    figure_index = 0
    for section in sections:
        body.append(f'<section id="{section.slug}"><h2>{html.escape(section.title)}</h2>')
        body.append(f'<p class="explain">{html.escape(section.explanation)}</p>')
        if section.numbers:
            rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_format(v)}</td></tr>" for k, v in section.numbers.items())
            body.append(f'<table class="numbers">{rows}</table>')
        if section.code:
            body.append(f"<pre>{html.escape(section.code)}</pre>")
        for figure in section.figures:
            div = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{figure_index}",
                                 config={"displaylogo": False, "responsive": True})
            body.append(f'<div class="figure">{div}</div>')
            figure_index += 1
        body.append("</section>")
    if footer:
        body.append(f"<footer>{html.escape(footer)}</footer>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(path: str | os.PathLike, title: str, sections: Sequence[Section], subtitle: str = "", footer: str = "") -> Path:
    """Write the report atomically to ``path`` and return it."""
    path = Path(path)
    atomic_write_text(path, render_report(title, sections, subtitle, footer))
    return path
