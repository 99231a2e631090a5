"""Experiments described in TOML, of any analysis: ``interp run FILE.toml --out DIR``.

- ``base``: the keys every analysis shares (``Experiment``), data-set tables (``DatasetSpec``) and
  the checks that turn parsed TOML into a config dataclass;
- one module per analysis, each one config class: ``cache``, ``lens``, ``patching``, ``probes``,
  ``resampling``, ``pruning``, ``directions``, ``recognition``;
- ``table``: the table of analyses (``ANALYSES``), ``load_config``, ``parse_config`` and ``run_experiment``;
- ``registry``: the named functions a file may call (data loaders, judges, extractors, embedders);
- ``flags``: the command-line flags of a config's fields (``add_config_flags``), so that an analysis'
  settings are declared once, in its config.

>>> config = load_config("circuits/harm_pruning/harm_pruning.toml", overrides=["q=[0.01]"])   # doctest: +SKIP
>>> result = run_experiment(config, "runs/harm_pruning")                          # doctest: +SKIP
"""

from interp.experiments.base import IMPORTS, JUDGES, DatasetSpec, Experiment, resolve_judge, table_type, type_options
from interp.experiments.cache import CacheConfig
from interp.experiments.directions import DirectionsConfig, InstructionsSpec
from interp.experiments.lens import LensConfig
from interp.experiments.patching import PatchingConfig
from interp.experiments.probes import ProbesConfig
from interp.experiments.pruning import CompletionsConfig, EvaluationConfig, HarmPruningConfig
from interp.experiments.recognition import MaskFile, RecognitionConfig
from interp.experiments.resampling import ResamplingConfig
from interp.experiments.table import ANALYSES, DEFAULT_ANALYSIS, load_config, parse_config, run_experiment

__all__ = [
    "ANALYSES",
    "DEFAULT_ANALYSIS",
    "IMPORTS",
    "JUDGES",
    "CacheConfig",
    "CompletionsConfig",
    "DatasetSpec",
    "DirectionsConfig",
    "EvaluationConfig",
    "Experiment",
    "HarmPruningConfig",
    "InstructionsSpec",
    "LensConfig",
    "MaskFile",
    "PatchingConfig",
    "ProbesConfig",
    "RecognitionConfig",
    "ResamplingConfig",
    "load_config",
    "parse_config",
    "resolve_judge",
    "run_experiment",
    "table_type",
    "type_options",
]
