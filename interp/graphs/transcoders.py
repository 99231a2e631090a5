"""A transcoder set on disk: one transcoder directory per layer, as attribution graphs read them.

``save_transcoders(transcoders, DIR)`` writes ``DIR/layer_00/``, ``DIR/layer_01/``, ... (each a dictionary
directory of ``interp.dictionaries.save_dictionary``). ``load_transcoders`` reads such a directory, any directory
holding one dictionary directory per layer in a format ``load_dictionary`` reads (sparsify's per-hookpoint folders
``layers.3.mlp/`` included), or a list of dictionary directories. Each one's layer is read from its recorded site
``blocks.L.ln2.hook_normalized``; a dictionary that records no site (a bare sparsify checkpoint) takes it from its
folder's name (``layers.3.mlp``, ``h.3.mlp``, ``layer_03``) and is given the sites attribution graphs need. A YAML
file is circuit-tracer's config of a set (``interp.graphs.circuit_tracer``).

A missing layer, two transcoders for one layer, a sparse autoencoder among them or transcoders of different models
are each one ``InterpError`` line naming the directories.

``load_feature_evaluations(DIR)`` reads the evaluations of a set's transcoders (``DIR/layer_NN/``, each written by
``DictionaryEval.save`` or ``interp dictionary eval --out``) by layer, for the hover text of ``Graph.figure``.

>>> save_transcoders(transcoders, "runs/transcoders")                       # doctest: +SKIP
>>> transcoders = load_transcoders("runs/transcoders", n_layers=model.cfg.n_layers)   # doctest: +SKIP
"""

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from interp.dictionaries.dictionary import SparseDictionary
from interp.dictionaries.formats import CONFIG, load_dictionary
from interp.dictionaries.writing import save_dictionary
from interp.errors import InterpError
from interp.graphs.circuit_tracer import is_circuit_tracer_config, read_circuit_tracer_set

if TYPE_CHECKING:
    from interp.dictionaries.evaluate import DictionaryEval

SITE = re.compile(r"blocks\.(\d+)\.ln2\.hook_normalized")
FOLDER = re.compile(r"(?:.*\.)?(?:layers|h|blocks|layer)[._](\d+)(?:\.mlp)?")  # layers.3.mlp, h.3.mlp, layer_03


def input_site(layer: int) -> str:
    """The hook a layer's transcoder reads in attribution graphs."""
    return f"blocks.{layer}.ln2.hook_normalized"


def output_site(layer: int) -> str:
    """The hook a layer's transcoder predicts in attribution graphs."""
    return f"blocks.{layer}.hook_mlp_out"


def save_transcoders(
    transcoders: Sequence[SparseDictionary] | Mapping[int, SparseDictionary], directory: str | Path
) -> Path:
    """Write one transcoder per layer to ``directory/layer_NN/`` (a list is in layer order; a dict maps layer to
    transcoder). Each must read ``blocks.L.ln2.hook_normalized`` of its layer L (or record no site: it is given
    that one). Returns ``directory``."""
    directory = Path(directory)
    by_layer = dict(transcoders) if isinstance(transcoders, Mapping) else dict(enumerate(transcoders))
    if not by_layer:
        raise InterpError("save_transcoders needs at least one transcoder.")
    width = max(2, len(str(max(by_layer))))
    checked = {layer: _for_layer(transcoder, layer) for layer, transcoder in sorted(by_layer.items())}
    for layer, transcoder in checked.items():
        save_dictionary(transcoder, directory / f"layer_{layer:0{width}d}")
    return directory


def _for_layer(transcoder: SparseDictionary, layer: int) -> SparseDictionary:
    """``transcoder`` checked to be a transcoder of ``layer`` (its sites set when it records none)."""
    if not isinstance(transcoder, SparseDictionary):
        raise InterpError(f"layer {layer}'s transcoder must be a SparseDictionary, got {type(transcoder).__name__}.")
    if not transcoder.site and not transcoder.output_site:
        return transcoder.with_provenance(site=input_site(layer), output_site=output_site(layer))
    if (transcoder.site, transcoder.output_site) != (input_site(layer), output_site(layer)):
        raise InterpError(
            f"layer {layer}'s dictionary reads {transcoder.site or '?'} and writes {transcoder.output_site or '?'}; "
            f"a transcoder of layer {layer} reads {input_site(layer)} and writes {output_site(layer)}."
        )
    return transcoder


def load_transcoders(source: str | Path | Sequence[str | Path], n_layers: int | None = None) -> list[SparseDictionary]:
    """The transcoders of ``source`` in layer order (see the module docstring): a directory of one dictionary
    directory per layer, a list of dictionary directories, or circuit-tracer's YAML config of a set
    (``interp.graphs.circuit_tracer``). ``n_layers``: the model's layer count (default: one
    more than the highest layer found); every layer below it needs exactly one transcoder."""
    found: dict[int, tuple[Path, SparseDictionary]] = {}
    if isinstance(source, (str, Path)) and is_circuit_tracer_config(Path(source)):
        found = read_circuit_tracer_set(Path(source))
    for directory in [] if found else _dictionary_directories(source):
        dictionary = load_dictionary(directory)
        layer = _layer_of(dictionary, directory)
        dictionary = _transcoder_of(dictionary, directory, layer)
        if layer in found:
            raise InterpError(
                f"two transcoders for layer {layer}: {found[layer][0]} and {directory}; keep one per layer."
            )
        found[layer] = (directory, dictionary)
    count = n_layers if n_layers is not None else max(found) + 1
    missing = [layer for layer in range(count) if layer not in found]
    if missing:
        raise InterpError(
            f"no transcoder for layer(s) {', '.join(map(str, missing))} of {count} in {_describe(source)}; "
            "attribution graphs need one per layer."
        )
    extra = sorted(layer for layer in found if layer >= count)
    if extra:
        raise InterpError(
            f"{_describe(source)} holds transcoders for layer(s) {', '.join(map(str, extra))}, but the model has "
            f"{count} layers."
        )
    for key in ("weights_hash", "model_id"):
        recorded = {getattr(dictionary, key): path for path, dictionary in found.values() if getattr(dictionary, key)}
        if len(recorded) > 1:
            first_path, second_path = list(recorded.values())[:2]
            raise InterpError(
                f"the transcoders belong to different models: {first_path} to {_model_name(found, first_path)}, "
                f"{second_path} to {_model_name(found, second_path)}; use one model's set."
            )
    return [found[layer][1] for layer in range(count)]


def load_feature_evaluations(directory: str | Path) -> "dict[int, DictionaryEval]":
    """The dictionary evaluations in ``directory``'s subdirectories (one per layer; a layer read from the evaluated
    site ``blocks.L.ln2.hook_normalized``, else from the folder's name) by layer."""
    from interp.dictionaries.evaluate import DictionaryEval

    root = Path(directory)
    meta = DictionaryEval.FORMAT.meta_file
    found = sorted(path for path in root.iterdir() if (path / meta).is_file()) if root.is_dir() else []
    if not found:
        raise InterpError(
            f"{root} holds no dictionary evaluations: expected one directory per layer (layer_00/, ...) each with "
            f"{meta} (interp dictionary eval --out)."
        )
    evaluations: dict[int, DictionaryEval] = {}
    for path in found:
        evaluation = DictionaryEval.load(path)
        match = SITE.fullmatch(evaluation.site) or FOLDER.fullmatch(path.name)
        if match is None:
            raise InterpError(f"{path} evaluates {evaluation.site or 'an unnamed site'}, which names no layer's MLP.")
        layer = int(match.group(1))
        if layer in evaluations:
            raise InterpError(f"{root} holds two evaluations for layer {layer}; keep one per layer.")
        evaluations[layer] = evaluation
    return evaluations


def _dictionary_directories(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The dictionary directories ``source`` names: itself, its subdirectories holding one, or the listed ones."""
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.is_dir():
            raise InterpError(f"no transcoder directory at {root}; pass a directory of one transcoder per layer.")
        if (root / CONFIG).is_file():
            return [root]
        directories = sorted(path for path in root.iterdir() if (path / CONFIG).is_file())
        if not directories:
            raise InterpError(
                f"{root} holds no transcoders: expected one dictionary directory per layer (each with {CONFIG}), "
                "e.g. layer_00/, layer_01/ (save_transcoders) or sparsify's layers.0.mlp/, layers.1.mlp/."
            )
        return directories
    directories = [Path(path) for path in source]
    if not directories:
        raise InterpError("load_transcoders needs a directory or a non-empty list of dictionary directories.")
    return directories


def _layer_of(dictionary: SparseDictionary, directory: Path) -> int:
    """The layer of a dictionary: from its recorded site, else from its folder's name."""
    if dictionary.site:
        match = SITE.fullmatch(dictionary.site)
        if match is None:
            raise InterpError(
                f"{directory} is a {dictionary.kind} of {dictionary.site}, not a transcoder of an MLP "
                "(blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out); attribution graphs need transcoders."
            )
        return int(match.group(1))
    match = FOLDER.fullmatch(directory.name)
    if match is None:
        raise InterpError(
            f"{directory} records no site and its name names no layer; name it like layers.3.mlp or layer_03, or "
            "save it with its site (save_transcoders)."
        )
    return int(match.group(1))


def _transcoder_of(dictionary: SparseDictionary, directory: Path, layer: int) -> SparseDictionary:
    """``dictionary`` checked to be a transcoder of ``layer``'s MLP; a bare sparsify transcoder gets its sites."""
    if not dictionary.site:
        sparsify = dictionary.extra.get("sparsify_cfg", {})
        if not (isinstance(sparsify, dict) and sparsify.get("transcode")):
            raise InterpError(
                f"{directory} holds a sparse autoencoder (its cfg.json has no transcode = true), not a transcoder; "
                "attribution graphs need transcoders."
            )
        return dictionary.with_provenance(site=input_site(layer), output_site=output_site(layer))
    if dictionary.output_site != output_site(layer):
        what = f"writes {dictionary.output_site}" if dictionary.is_transcoder else "is a sparse autoencoder"
        raise InterpError(
            f"{directory} reads {dictionary.site} but {what}; attribution graphs need transcoders to "
            f"{output_site(layer)}."
        )
    return dictionary


def _model_name(found: dict[int, tuple[Path, SparseDictionary]], directory: Path) -> str:
    """The model the transcoder in ``directory`` records, for messages."""
    dictionary = next(dictionary for path, dictionary in found.values() if path == directory)
    name = dictionary.model_id or "an unnamed model"
    return f"{name} (weights {dictionary.weights_hash[:12]})" if dictionary.weights_hash else name


def _describe(source: str | Path | Sequence[str | Path]) -> str:
    return str(source) if isinstance(source, (str, Path)) else "the listed directories"
