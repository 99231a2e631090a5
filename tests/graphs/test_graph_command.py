"""Transcoder sets on disk, ``interp graph`` and ``analysis = "graph"``, and the pruned graph's figure.

- ``save_transcoders`` -> ``load_transcoders`` gives the transcoders back bit for bit, in layer order (from a
  directory, a dict, a list of directories in any order, a bare sparsify folder named ``layers.N.mlp``); a missing
  layer, two for one layer, a sparse autoencoder, transcoders of two models are one line each;
- ``interp graph`` on a tiny model with random transcoders saved to disk exits 0 and writes the graph that
  ``attribute`` computes from the same inputs, an offline HTML page whose hover text has the prompt's tokens, and
  the scores; a rerun loads the graph (``attribute`` is not called) and says so; other thresholds recompute it;
- ``interp run FILE.toml`` with ``analysis = "graph"`` gives the same graph;
- the pruned figure has fewer nodes than the full one and the token strings as x tick labels; a feature's hover
  text shows its top contexts and promoted logits when a ``DictionaryEval`` is given (``features``, also from TOML
  through ``load_feature_evaluations``);
- bad input on the command line (another model's transcoders, a missing layer, a prompt longer than the context)
  is one line with exit code 2.
"""

import dataclasses
import html
import json
import logging
import shutil

import pytest
import torch

from interp.cli import main
from interp.dictionaries.dictionary import SparseDictionary
from interp.dictionaries.formats import INTERP_FILE
from interp.dictionaries.writing import save_dictionary
from interp.errors import InterpError
from interp.graphs import Graph, attribute, load_feature_evaluations, load_transcoders, save_transcoders
from interp.model import model_id
from interp.model.weights import weights_hash

PROMPT = "the quick brown fox jumps over the lazy dog"
ARCH = "llama"
D_SAE = 40
BATCH = 16


def random_transcoders(model, seed: int = 0) -> list[SparseDictionary]:
    """One random TopK transcoder with a skip connection per layer, in the layout sparsify saves (b_dec not
    subtracted from the input), recording ``model``."""
    generator = torch.Generator().manual_seed(seed)
    d = int(model.cfg.d_model)

    def normal(*shape, std=1.0):
        return torch.randn(*shape, generator=generator) * std

    return [
        SparseDictionary(
            W_enc=normal(d, D_SAE, std=d**-0.5),
            b_enc=normal(D_SAE, std=0.2) + 0.1,
            W_dec=normal(D_SAE, d, std=0.05),
            b_dec=normal(d, std=0.01),
            activation="topk",
            k=8,
            W_skip=normal(d, d, std=0.01),
            apply_b_dec_to_input=False,
            site=f"blocks.{layer}.ln2.hook_normalized",
            output_site=f"blocks.{layer}.hook_mlp_out",
            model_id=model_id(model),
            weights_hash=weights_hash(model),
        )
        for layer in range(int(model.cfg.n_layers))
    ]


def same_weights(first: SparseDictionary, second: SparseDictionary) -> bool:
    names = ("W_enc", "b_enc", "W_dec", "b_dec", "W_skip")
    return all(torch.equal(getattr(first, name), getattr(second, name)) for name in names) and (
        (first.site, first.output_site, first.k, first.weights_hash)
        == (second.site, second.output_site, second.k, second.weights_hash)
    )


def one_line_error(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and "\n" not in error, error


@pytest.fixture(scope="module")
def saved(load_tiny, tmp_path_factory):
    """The tiny model, its random transcoders, their directory, and one `interp graph` run's output directory."""
    model = load_tiny(ARCH)
    transcoders = random_transcoders(model)
    directory = save_transcoders(transcoders, tmp_path_factory.mktemp("transcoders") / "set")
    return model, transcoders, directory


@pytest.fixture(scope="module")
def command_run(saved, tiny_model_dirs, tmp_path_factory):
    _, _, directory = saved
    out = tmp_path_factory.mktemp("graph_run") / "graph"
    argv = ["graph", "--model", str(tiny_model_dirs[ARCH]), "--prompt", PROMPT, "--transcoders", str(directory)]
    argv += ["--out", str(out), "--batch-size", str(BATCH), "--quiet"]
    assert main(argv) == 0
    return argv, out


@pytest.fixture(scope="module")
def evaluated(saved, tmp_path_factory):
    """Layer 0's transcoder evaluated on a few prompts, and a directory holding it as layer_00/."""
    from interp.data import PromptSet
    from interp.dictionaries.evaluate import evaluate_dictionary

    model, transcoders, _ = saved
    prompts = PromptSet.from_records([{"text": text} for text in ("a cat sat on the mat", PROMPT, "how do i bake bread ?")])
    evaluation = evaluate_dictionary(transcoders[0], model, prompts, progress=False)
    directory = tmp_path_factory.mktemp("evaluations")
    evaluation.save(directory / "layer_00")
    return evaluation, directory


# ---- transcoder sets ------------------------------------------------------------------------------------------


def test_saved_transcoders_load_back_bit_equal_in_layer_order(saved, tmp_path):
    model, transcoders, directory = saved
    assert sorted(path.name for path in directory.iterdir()) == ["layer_00", "layer_01"]
    for loaded in (
        load_transcoders(directory, n_layers=int(model.cfg.n_layers)),
        load_transcoders(directory),
        load_transcoders([directory / "layer_01", directory / "layer_00"]),
        load_transcoders(save_transcoders(dict(enumerate(transcoders)), tmp_path / "from_dict")),
    ):
        assert len(loaded) == len(transcoders)
        assert all(same_weights(got, want) for got, want in zip(loaded, transcoders))
    bare = tmp_path / "sparsify"  # sparsify's own layout: per-hookpoint folders, no record of the sites
    for layer, transcoder in enumerate(transcoders):
        save_dictionary(transcoder, bare / f"layers.{layer}.mlp")
        (bare / f"layers.{layer}.mlp" / INTERP_FILE).unlink()
    loaded = load_transcoders(bare, n_layers=2)
    assert [t.site for t in loaded] == ["blocks.0.ln2.hook_normalized", "blocks.1.ln2.hook_normalized"]
    assert [t.output_site for t in loaded] == ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]
    assert all(torch.equal(got.W_enc, want.W_enc) for got, want in zip(loaded, transcoders))


def test_bad_transcoder_sets_are_one_line(saved, load_tiny, tmp_path):
    _, transcoders, directory = saved
    autoencoder = dataclasses.replace(
        transcoders[0], site="blocks.0.hook_resid_post", output_site="", apply_b_dec_to_input=True, W_skip=None
    )
    save_dictionary(autoencoder, tmp_path / "autoencoder")
    bare_autoencoder = tmp_path / "bare" / "layers.0.mlp"
    save_dictionary(autoencoder.with_provenance(site=""), bare_autoencoder)
    (bare_autoencoder / INTERP_FILE).unlink()
    other = random_transcoders(load_tiny("qwen2"))
    save_transcoders([transcoders[0], other[1]], tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    cases = {
        "no transcoder for layer(s) 1 of 2": lambda: load_transcoders([directory / "layer_00"], n_layers=2),
        "two transcoders for layer 0": lambda: load_transcoders([directory / "layer_00", directory / "layer_00"]),
        "the model has 1 layers": lambda: load_transcoders(directory, n_layers=1),
        "not a transcoder": lambda: load_transcoders([tmp_path / "autoencoder"]),
        "holds a sparse autoencoder": lambda: load_transcoders(tmp_path / "bare"),
        "different models": lambda: load_transcoders(tmp_path / "mixed"),
        "holds no transcoders": lambda: load_transcoders(tmp_path / "empty"),
        "no transcoder directory": lambda: load_transcoders(tmp_path / "absent"),
        "holds no dictionary evaluations": lambda: load_feature_evaluations(tmp_path / "empty"),
        "a transcoder of layer 1 reads blocks.1.ln2.hook_normalized": lambda: save_transcoders(
            [transcoders[0], transcoders[0]], tmp_path / "wrong_site"
        ),
    }
    for expected, call in cases.items():
        with pytest.raises(InterpError, match=expected.replace("(", r"\(").replace(")", r"\)")) as caught:
            call()
        assert "\n" not in str(caught.value)


# ---- interp graph ---------------------------------------------------------------------------------------------


def test_the_command_writes_the_graph_attribute_computes(saved, command_run):
    model, transcoders, _ = saved
    _, out = command_run
    graph = Graph.load(out)
    expected = attribute(model, PROMPT, transcoders, batch_size=BATCH, progress=False)
    for name in ("tokens", "active_features", "activations", "logit_tokens", "logit_probabilities", "adjacency"):
        assert torch.equal(getattr(graph, name), getattr(expected, name)), name
    assert graph.token_strings == expected.token_strings and graph.provenance == expected.provenance
    page = (out / "graph.html").read_text(encoding="utf-8")
    assert "<script src=" not in page and "* plotly.js v" in page  # plotly.js inlined: opens offline
    words = [token for token in graph.token_strings if token.strip().isalpha()]
    assert len(words) >= 5 and all(f"token: {token}" in page for token in words)
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert 0 <= scores["replacement_score"] <= 1 and 0 <= scores["completeness_score"] <= 1
    assert scores["feature_nodes_kept"] <= scores["feature_nodes"] == graph.n_features
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["analysis"] == "graph"


def test_a_rerun_loads_the_graph_and_other_thresholds_recompute_it(command_run, monkeypatch, capsys, caplog):
    import interp.graphs.attribution

    argv, out = command_run
    real_attribute = interp.graphs.attribution.attribute
    before = Graph.load(out)

    def refuse(*args, **kwargs):
        raise AssertionError("the finished graph was computed again")

    monkeypatch.setattr(interp.graphs.attribution, "attribute", refuse)
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="interp.experiments.graph"):
        assert main(argv) == 0
    assert "reused the finished graph" in capsys.readouterr().out
    assert any("loaded, not computed again" in record.getMessage() for record in caplog.records)

    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real_attribute(*args, **kwargs)

    monkeypatch.setattr(interp.graphs.attribution, "attribute", counted)
    assert main([*argv, "--node-threshold", "0.5"]) == 0
    assert len(calls) == 1  # another setting: the same analysis, computed again in place
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["node_threshold"] == 0.5
    assert json.loads((out / "scores.json").read_text(encoding="utf-8"))["node_threshold"] == 0.5
    assert torch.equal(Graph.load(out).adjacency, before.adjacency)


def test_the_toml_route_gives_the_same_graph(saved, command_run, evaluated, tiny_model_dirs, tmp_path):
    _, _, directory = saved
    _, out = command_run
    toml = tmp_path / "graph.toml"
    toml.write_text(
        f'analysis = "graph"\nmodel = "{tiny_model_dirs[ARCH]}"\nprompt = "{PROMPT}"\n'
        f'transcoders = "{directory}"\nbatch_size = {BATCH}\nfeatures = "{evaluated[1]}"\n',
        encoding="utf-8",
    )
    assert main(["run", str(toml), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    from_toml, from_command = Graph.load(tmp_path / "run"), Graph.load(out)
    assert torch.equal(from_toml.adjacency, from_command.adjacency)
    assert torch.equal(from_toml.active_features, from_command.active_features)
    assert (tmp_path / "run" / "scores.json").is_file()
    page = (tmp_path / "run" / "graph.html").read_text(encoding="utf-8")
    assert "top contexts" in page and "promoted logits" in page  # the evaluations of `features` in the hover text
    assert "top contexts" not in (out / "graph.html").read_text(encoding="utf-8")


def test_bad_input_on_the_command_line_is_one_line(saved, load_tiny, tiny_model_dirs, tmp_path, capsys):
    model, _, directory = saved
    base = ["graph", "--model", str(tiny_model_dirs[ARCH]), "--quiet", "--prompt", PROMPT]
    other = save_transcoders(random_transcoders(load_tiny("qwen2")), tmp_path / "other")
    one_line_error(capsys, [*base, "--transcoders", str(other), "--out", str(tmp_path / "a")], "trained on")
    partial = tmp_path / "partial"
    shutil.copytree(directory / "layer_00", partial / "layer_00")
    one_line_error(
        capsys, [*base, "--transcoders", str(partial), "--out", str(tmp_path / "b")], "no transcoder for layer(s) 1"
    )
    long_prompt = ["--prompt", "fox " * (int(model.cfg.n_ctx) + 1)]
    one_line_error(
        capsys, [*base, *long_prompt, "--transcoders", str(directory), "--out", str(tmp_path / "c")], "context"
    )


# ---- the figure -----------------------------------------------------------------------------------------------


def node_count(figure) -> int:
    return sum(len(trace.x) for trace in figure.data if trace.name.endswith("nodes"))


def test_the_pruned_figure_is_smaller_and_shows_the_tokens(command_run, evaluated):
    graph = Graph.load(command_run[1])
    pruned, full = graph.figure(node_threshold=0.5, edge_threshold=0.9), graph.figure(pruned=False)
    assert node_count(pruned) < node_count(full) == graph.n_nodes
    assert tuple(pruned.layout.xaxis.ticktext) == tuple(html.escape(token) for token in graph.token_strings)
    assert pruned.layout.xaxis.title.text and pruned.layout.yaxis.title.text
    assert pruned.layout.yaxis.ticktext[0] == "embeddings" and pruned.layout.yaxis.ticktext[-1] == "logits"
    evaluations = load_feature_evaluations(evaluated[1])
    assert list(evaluations) == [0] and torch.equal(evaluations[0].top_prompt, evaluated[0].top_prompt)
    described = graph.figure(pruned=False, features=evaluations)
    features = next(trace for trace in described.data if trace.name == "feature nodes")
    layer0 = [text for text, layer in zip(features.hovertext, graph.active_features[:, 0].tolist()) if layer == 0]
    assert layer0 and all("top contexts" in text and "promoted logits" in text for text in layer0)
    assert any("<b>[" in text for text in layer0)  # a context with its token marked
    assert all("activation:" in text and "influence on the logits:" in text for text in features.hovertext)


def test_retrained_transcoders_at_the_same_path_are_not_served_a_stale_graph(saved, tiny_model_dirs, tmp_path):
    """The graph records each transcoder's content hash; a rerun over other transcoders at the same path computes the
    graph again instead of loading the finished one."""
    model, transcoders, _ = saved
    directory = save_transcoders(transcoders, tmp_path / "set")
    out = tmp_path / "graph"
    argv = ["graph", "--model", str(tiny_model_dirs[ARCH]), "--prompt", PROMPT, "--transcoders", str(directory),
            "--out", str(out), "--batch-size", str(BATCH), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    first = Graph.load(out)
    assert first.provenance.extra["transcoder_weights"] == ",".join(t.content_hash() for t in transcoders)
    retrained = random_transcoders(model, seed=1)
    shutil.rmtree(directory)
    save_transcoders(retrained, directory)
    assert main(argv) == 0
    second = Graph.load(out)
    assert second.provenance.extra["transcoder_weights"] == ",".join(t.content_hash() for t in retrained)
    assert not torch.equal(second.adjacency[:1], first.adjacency[:1]) or second.n_features != first.n_features
