"""Experiments described in TOML, of any analysis: ``interp run FILE.toml --out DIR``.

A file names its analysis (``analysis = "lens"``; without the key, ``"pruning"``) and sets its keys,
plus ``name``, ``model``, ``dtype``, ``device``. Each analysis' keys are a frozen config dataclass
whose field docs are ``interp run --help``; ``run_experiment`` hands it to the analysis, which writes
its result to DIR (``.save(DIR)``) and the config beside it (``DIR/config.json``). Rerun into DIR:
cache shards, pruning scores and points, and resampling rollouts resume (another config there is
refused); lens, patching, probes, directions, recognition and graph are skipped when DIR holds their result of the same
config and data, and recomputed otherwise. A new analysis is one config class (``ANALYSIS``, ``run``) in its
own module of ``interp.experiments`` and one entry in ``ANALYSES`` here. E.g. ``analysis = "lens"``,
``targets = " sure"``, ``[prompts] path = "p.jsonl"``.

>>> config = load_config("circuits/harm_pruning/harm_pruning.toml", overrides=["q=[0.01]"])   # doctest: +SKIP
>>> result = run_experiment(config, "runs/harm_pruning")                          # doctest: +SKIP
"""

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomllib

from interp.errors import InterpError
from interp.experiments import registry
from interp.experiments.base import Experiment, absolute_paths, build, did_you_mean
from interp.experiments.cache import CacheConfig
from interp.experiments.dictionary import DictionaryConfig
from interp.experiments.directions import DirectionsConfig
from interp.experiments.graph import GraphConfig
from interp.experiments.lens import LensConfig
from interp.experiments.patching import PatchingConfig
from interp.experiments.probes import ProbesConfig
from interp.experiments.pruning import HarmPruningConfig
from interp.experiments.recognition import RecognitionConfig
from interp.experiments.resampling import ResamplingConfig

DEFAULT_ANALYSIS = "pruning"  # what a file without `analysis = ...` runs (pruning files predate the key)

# analysis name -> its config class: a new analysis is one entry here
ANALYSES: dict[str, type[Experiment]] = {
    config.ANALYSIS: config
    for config in (
        CacheConfig,
        LensConfig,
        PatchingConfig,
        ProbesConfig,
        ResamplingConfig,
        HarmPruningConfig,
        DirectionsConfig,
        RecognitionConfig,
        DictionaryConfig,
        GraphConfig,
    )
}


def run_experiment(
    config: Experiment,
    out: str | Path,
    model=None,
    progress: bool = True,
    allow_imports: bool = False,
    allow_outside: bool = False,
) -> Any:
    """Run (or resume) ``config`` (of ``load_config`` or a class of ``ANALYSES``) into ``out``; returns its result,
    saved there.

    ``model``: an already loaded model (default: ``config.model`` is loaded when the analysis needs one).
    ``allow_imports``: let the config's judges, data loaders, extractors and embedders be import paths
    ``'module:function'`` (importing runs that module's code: only for files you trust); else only
    registered names (``interp.experiments.registry``) are called, and an import path is refused before anything runs.
    ``allow_outside``: let the paths the experiment writes to lead outside ``out`` (as ``allow_outside = true``
    in the TOML file); else such a path is refused before anything runs.
    """
    if not isinstance(config, Experiment):
        raise InterpError(
            f"run_experiment needs an experiment config ({', '.join(cls.__name__ for cls in ANALYSES.values())}), got "
            f"{type(config).__name__}."
        )
    if allow_outside and not config.allow_outside:
        config = dataclasses.replace(config, allow_outside=True)
    config.check_outputs(Path(out))
    with registry.imports_allowed(allow_imports):
        registry.check_config(config)
        return config.run(Path(out), model=model, progress=progress)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read and check a TOML experiment file; ``overrides``: ``KEY=VALUE`` with a TOML value
    (``evaluation.harmful.limit=8``)."""
    path = Path(path)
    if not path.is_file():
        raise InterpError(
            f"no experiment file at {path}{' (it is a directory)' if path.is_dir() else ''}; pass a TOML file."
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InterpError(f"{path} is not valid TOML (UTF-8 text): {error}.") from error
    except RecursionError:
        raise InterpError(f"{path} nests arrays or tables too deeply to read; flatten it.") from None
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = [part.strip() for part in key.split(".")]
        if not sep or not all(parts):
            raise InterpError(
                f"--set {item!r}: use KEY=VALUE, e.g. --set n_samples=16 or --set evaluation.harmful.limit=8."
            )
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word is a string: --set model=organism
        except RecursionError:
            raise InterpError(
                f"--set {key}: the value nests arrays or tables too deeply to read; flatten it."
            ) from None
        table = data
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise InterpError(f"--set {item!r}: {part!r} is not a table in {path}.")
        table[parts[-1]] = value
    return parse_config(data, base=path.resolve().parent)


def parse_config(data: Mapping[str, Any], base: Path = Path(".")) -> Experiment:
    """The experiment config of parsed TOML (``base``: the directory relative paths start from)."""
    data = dict(data)
    analysis = data.pop("analysis", DEFAULT_ANALYSIS)
    if not isinstance(analysis, str) or analysis not in ANALYSES:
        raise InterpError(
            f"unknown analysis {analysis!r:.60} in the config.{did_you_mean(str(analysis), ANALYSES)} Known analyses: "
            f"{', '.join(ANALYSES)}."
        )
    config = absolute_paths(build(ANALYSES[analysis], data, "the config"), Path(base))
    if config.model.startswith(
        ("./", "../")
    ):  # a model directory written relative to the TOML file (a name or hub id never starts so)
        config = dataclasses.replace(config, model=str((Path(base) / config.model).resolve()))
    return config
