"""The HTML report reads well on any machine: tables of rows are HTML tables (not raw JSON), figure titles
name files (not this machine's absolute paths), and the probe figure's legend fits a report column."""

import plotly.graph_objects as go
import torch

from interp.report import Section, render_report

PRUNING_ROWS = {
    "set difference p=1%": {"harmful_rate": 0.125, "benign_helpful_rate": 0.75, "n_pruned": 1200},
    "random control": {"harmful_rate": 0.875, "benign_helpful_rate": 1.0, "n_pruned": 1200},
}


def _section_html(numbers) -> str:
    page = render_report("report", [Section("Harm-weight pruning", "what it shows", numbers=numbers)])
    return page[page.index("<section") : page.index("</section>")]


def test_a_table_of_rows_is_an_html_table_with_a_header():
    section = _section_html({"pruning": PRUNING_ROWS})
    assert '"harmful_rate"' not in section and "{" not in section, "the rows are shown as raw JSON"
    assert "<th>harmful_rate</th><th>benign_helpful_rate</th><th>n_pruned</th>" in section
    assert "<tr><td>random control</td><td>0.875</td><td>1</td><td>1200</td></tr>" in section


def test_a_list_of_records_is_a_table_and_a_list_of_texts_a_list():
    section = _section_html({"sentences": [{"sentence": "a <b>", "importance": 0.5}], "top": ["first", "second"]})
    assert "<th>sentence</th><th>importance</th>" in section and "<td>a &lt;b&gt;</td>" in section
    assert "<ul><li>first</li><li>second</li></ul>" in section


def test_a_plain_table_of_numbers_is_unchanged():
    section = _section_html({"prompts": 8, "AUROC": 0.98765})
    assert "<tr><td>prompts</td><td>8</td></tr>" in section and "<td>0.9877</td>" in section


def test_figure_titles_show_file_names_not_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figure = go.Figure(layout=dict(title=dict(text="Logit lens — /home/someone/models/tiny-gpt2")))
    figure.add_annotation(text=f"h_last at {tmp_path}/stores/acts<br><sup>of /data/prompts.jsonl</sup>")
    page = render_report("report", [Section("Lens", "what it shows", figures=(figure,))])
    unescaped = page.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u002f", "/").replace("\\u2014", "—")  # plotly's JSON escapes
    assert "/home/someone" not in unescaped and str(tmp_path) not in unescaped and "/data/" not in unescaped
    assert "Logit lens — tiny-gpt2" in unescaped
    assert "h_last at stores/acts<br><sup>of prompts.jsonl</sup>" in unescaped
    assert figure.layout.title.text == "Logit lens — /home/someone/models/tiny-gpt2", "the caller's figure is left as it was"


def test_the_probe_figure_fits_a_report_column_with_its_legend_below():
    from interp.probes import train_probes

    generator = torch.Generator().manual_seed(0)
    labels = ["benign", "harmful"] * 12
    acts = torch.randn(3, 24, 8, generator=generator) + torch.tensor([0.0, 2.0] * 12)[None, :, None]
    figure = train_probes(acts, labels, cv=3, progress=False).figure()
    layout = figure.layout
    assert layout.width is None or layout.width <= 800, f"the figure is {layout.width} px wide; the report column is ~800 px"
    assert layout.legend.orientation == "h" and layout.legend.y < 0, "the legend must lie in rows under the plot, not beside it"
    assert layout.legend.yanchor == "top" and layout.margin.b >= 120, "the bottom margin must leave room for the legend"
