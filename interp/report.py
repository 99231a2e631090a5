"""A self-contained HTML report: sections of text, numbers and Plotly figures, plotly.js inlined once.

>>> import plotly.graph_objects as go
>>> section = Section("Logit lens", "Where the answer appears.", figures=(go.Figure(),), numbers={"layers": 4})
>>> html = render_report("demo", [section])
>>> html.count("<script type=\\"text/javascript\\">/**") <= 1 and "Logit lens" in html
True

The page works offline: it loads nothing from the network.
"""

import html
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from interp.io import atomic_write_text

logger = logging.getLogger(__name__)

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
p.lead { color: #555; } .explain { color: #333; line-height: 1.5; }
table.numbers { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
table.numbers td { border: 1px solid #ddd; padding: 0.25em 0.7em; } table.numbers td:first-child { color: #555; }
table.rows { border-collapse: collapse; }
table.rows th, table.rows td { border: 1px solid #e4e4e4; padding: 0.15em 0.5em; text-align: right; }
table.rows th { background: #f6f6f6; font-weight: 600; } table.numbers ul { margin: 0; padding-left: 1.2em; }
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
    """One number of a section as HTML: a table of rows (a dict or list of dicts) as a table, a list as a list."""
    if isinstance(value, float):
        return f"{value:.4g}"
    rows = _table_rows(value)
    if rows is not None:
        columns = list(dict.fromkeys(key for row in rows.values() for key in row))
        head = "<tr><th></th>" + "".join(f"<th>{html.escape(str(column))}</th>" for column in columns) + "</tr>"
        body = "".join(f"<tr><td>{html.escape(str(name))}</td>"
                       + "".join(f"<td>{_format(row.get(column, ''))}</td>" for column in columns) + "</tr>"
                       for name, row in rows.items())  # fmt: skip
        return f'<table class="rows">{head}{body}</table>'
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(key))}: {_format(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return "<ul>" + "".join(f"<li>{_format(item)}</li>" for item in value) + "</ul>" if value else "none"
    return html.escape(str(value))


def _table_rows(value: Any) -> dict[Any, dict] | None:
    """``{row name: {column: value}}`` when ``value`` is a table (a dict of dicts or a list of dicts), else None."""
    if isinstance(value, dict) and value and all(isinstance(row, dict) for row in value.values()):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(row, dict) for row in value):
        return dict(enumerate(value))
    return None


# an absolute path in a figure's text (a model loaded from a directory, a store): what follows it is a name
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/<])/(?:[^\s/<>'\"(),;]+/)*[^\s/<>'\"(),;]+")


def _short_path(match: re.Match) -> str:
    """The path relative to the working directory where it is inside it, else its last part (the file name)."""
    path = Path(match.group(0))
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) and path != Path.cwd() else path.name


def _without_absolute_paths(figure: go.Figure) -> go.Figure:
    """A copy of ``figure`` whose title and subplot titles show file names, not the absolute paths of this machine."""
    figure = go.Figure(figure)
    if figure.layout.title.text:
        figure.layout.title.text = _ABSOLUTE_PATH.sub(_short_path, figure.layout.title.text)
    for annotation in figure.layout.annotations:
        if annotation.text:
            annotation.text = _ABSOLUTE_PATH.sub(_short_path, annotation.text)
    return figure


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
            rows = "".join(
                f"<tr><td>{html.escape(str(k))}</td><td>{_format(v)}</td></tr>" for k, v in section.numbers.items()
            )
            body.append(f'<table class="numbers">{rows}</table>')
        if section.code:
            body.append(f"<pre>{html.escape(section.code)}</pre>")
        for figure in section.figures:
            div = _without_absolute_paths(figure).to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"figure-{figure_index}",
                config={"displaylogo": False, "responsive": True},
            )
            body.append(f'<div class="figure">{div}</div>')
            figure_index += 1
        body.append("</section>")
    if footer:
        body.append(f"<footer>{html.escape(footer)}</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>\n<body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(
    path: str | os.PathLike, title: str, sections: Sequence[Section], subtitle: str = "", footer: str = ""
) -> Path:
    """Write the report atomically to ``path`` and return it."""
    path = Path(path)
    atomic_write_text(path, render_report(title, sections, subtitle, footer))
    return path


def screenshot(html, png, size: str = "1100,560", timeout: int = 180) -> bool:
    """A PNG of a saved figure (``html``) with headless Chromium, where it is installed (kaleido is not a
    dependency); returns whether the PNG was written. For the findings' figures in ``circuits/``.
    """
    import shutil
    import subprocess
    from pathlib import Path

    html, png = Path(html), Path(png)
    browser = shutil.which("chromium") or shutil.which("google-chrome")
    if browser is None:
        logger.warning("no chromium: %s is only in HTML", html)
        return False
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size}", f"--screenshot={png.resolve()}", html.resolve().as_uri()], check=False,
                   capture_output=True, timeout=timeout)  # fmt: skip
    if png.exists():
        logger.info("figure: %s", png)
    else:
        logger.warning("chromium wrote no screenshot of %s", html)
    return png.exists()
