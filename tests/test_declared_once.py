"""Each analysis declared once: for every analysis of the experiments table, each field of its TOML config
agrees with the flag of its command (default after the command's text conversion, help = the field's doc)
and with the library function's parameter of the same name (``inspect.signature``).

A field without a flag, a flag whose help is its own, a parameter of another name and a function default
that stands for the config's value are each listed below with the reason; anything else that differs fails.
"""

import argparse
import dataclasses
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from interp.commands import build_parser
from interp.commands.common import comma_words, parse_positions
from interp.commands.direction import parse_ints, parse_words
from interp.commands.probe import parse_layers
from interp.commands.prune import parse_seeds
from interp.experiments import ANALYSES, DatasetSpec, Experiment, InstructionsSpec
from interp.experiments.base import type_options

REQUIRED = "required"  # a field without a default, a parameter without one: both must be given


@dataclass(frozen=True)
class Twins:
    """Where an analysis is declared besides its config: its command's parsers and the functions it calls."""

    commands: tuple[tuple[str, ...], ...]  # parser paths, e.g. ("probe", "train"); () for no command
    functions: tuple[str, ...]  # "module:qualified.name", searched in order for a field's parameter
    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a nested table -> its functions


TWINS = {
    "cache": Twins((("cache",),), ("interp.store:cache_activations",)),
    "lens": Twins((("lens",),), ("interp.lens:logit_lens", "interp.lens:LensResult.figure")),
    "patching": Twins((("patch",),), ("interp.patching:activation_patching",)),
    "probes": Twins((("probe", "train"),), ("interp.probes:train_probes",)),
    "resampling": Twins(
        (("resample",), ("resample", "analyze")),
        (
            "interp.resampling:SamplingConfig",
            "interp.resampling:VLLMBackend",
            "interp.resampling:analyze",
            "interp.resampling:run_rollouts",
        ),
    ),
    "pruning": Twins(
        (("prune",),),
        ("interp.pruning.sweep:run_sweep",),
        tables={
            "evaluation": ("interp.pruning.evaluate:PruningEvaluator",),
            "completions": ("interp.pruning.completions:generate_completions",),
        },
    ),
    "directions": Twins((("direction", "find"),), ("interp.directions:find_directions",)),
    "recognition": Twins((), ("interp.pruning.recognition:recognition_after_pruning",)),
    "dictionary": Twins(
        (("dictionary", "train"),),
        ("interp.dictionaries.training:train_dictionary", "interp.dictionaries.settings:TrainingSettings"),
    ),
    "graph": Twins(
        (("graph",),),
        ("interp.graphs.attribution:attribute", "interp.graphs.prune:prune_graph", "interp.graphs.graph:Graph.figure"),
    ),
}
SHARED_FUNCTIONS = ("interp.model:load_model",)  # of the keys every analysis shares (model, dtype, device)
SHARED_FIELDS = {item.name for item in dataclasses.fields(Experiment)} - {"name"}

# ---- the command line ---------------------------------------------------------------------------------

NO_COMMAND = {"recognition": "no subcommand: recognition after pruning runs from TOML only (interp run)"}
# (analysis or "*" for every one, field) -> why the command has no flag for it
NO_FLAG = {
    ("*", "name"): "a command's result is named by its --out directory",
    ("dictionary", "model"): "training reads the store alone; `interp dictionary eval --model` loads one",
    ("dictionary", "dtype"): "training reads the store alone; `interp dictionary eval --dtype`",
    ("dictionary", "device"): "training reads the store alone; `interp dictionary eval --device`",
    ("dictionary", "evaluation"): "held-out prompts: `interp dictionary eval --prompts FILE`",
    ("dictionary", "eval_batch_size"): "`interp dictionary eval --batch-size`",
    ("*", "allow_outside"): "a command writes only into its --out; `interp run --allow-outside` is its twin",
    ("cache", "prompts"): "a data-set table: --prompts FILE",
    ("lens", "prompts"): "a data-set table: --prompts FILE",
    ("patching", "clean"): "a data-set table: --clean FILE",
    ("patching", "corrupt"): "a data-set table: --corrupt FILE",
    ("resampling", "prompt"): "read from the --problem FILE ('prompt' or a Thought Anchors 'problem')",
    ("resampling", "solution"): "read from the --problem FILE",
    ("resampling", "gt_answer"): "read from the --problem FILE",
    ("resampling", "answer"): "read from the --problem FILE (its 'answer_regex')",
    ("pruning", "harmful"): "a data-set table: --harmful FILE",
    ("pruning", "benign"): "a data-set table: --benign FILE (also the benign pairs of the evaluation)",
    ("pruning", "evaluation"): "a table: its fields are checked one by one below",
    ("pruning", "categories"): "[categories.NAME] data-set tables: TOML only (one mask per category)",
    ("pruning", "overlap_p"): "of the [categories] masks, which the command does not take",
    ("pruning", "overlap_q"): "of the [categories] masks, which the command does not take",
    ("pruning", "evaluate_categories"): "of the [categories] masks, which the command does not take",
    ("pruning", "save_masks"): "interp prune always writes its mask (masks/LABEL.safetensors)",
    ("pruning", "completions"): "a [completions] table: TOML only (the command takes prompt + response files)",
    ("pruning", "evaluation.harmful"): "a data-set table: --eval-harmful FILE (default: the prompts of --harmful)",
    ("pruning", "evaluation.benign_pairs"): "the pairs of --benign",
    ("pruning", "evaluation.benign_prompts"): "TOML only: the command measures harm and the benign pairs' loss",
    ("pruning", "evaluation.benign_judge"): "TOML only, with benign_prompts",
    ("pruning", "evaluation.harmful_pairs"): "TOML only: the command measures harm and the benign pairs' loss",
    ("pruning", "evaluation.tasks"): "TOML only: the command measures harm and the benign pairs' loss",
    ("pruning", "evaluation.extract"): "TOML only, with tasks",
    ("pruning", "evaluation.task_max_new_tokens"): "TOML only, with tasks",
    ("pruning", "evaluation.batch_size"): "--batch-size is the scoring batch; the generation batch is TOML only",
    ("pruning", "evaluation.temperature"): "the command evaluates greedily; sampling is TOML only",
    ("pruning", "evaluation.seed"): "the command evaluates greedily; sampling is TOML only",
    ("pruning", "evaluation.case_sensitive_keywords"): "TOML only: the command keeps the reference's rule",
    ("pruning", "evaluation.group_field"): "TOML only: per-category harm rates",
    ("pruning", "evaluation.samples_kept"): "TOML only: the command keeps the default examples",
    ("pruning", "completions.max_new_tokens"): "a [completions] table: TOML only",
    ("pruning", "completions.batch_size"): "a [completions] table: TOML only",
    ("pruning", "completions.directory"): "a [completions] table: TOML only",
    ("directions", "harmful"): "an instruction table: --harmful FILE with --harmful-column",
    ("directions", "benign"): "an instruction table: --benign FILE with --benign-column",
    ("directions", "orthogonalize_out"): "`interp direction orthogonalize --direction DIR --out NEW` writes it",
}
# (analysis or "*", field) -> why its flag's help is not the field's doc
OWN_HELP = {
    ("*", "model"): "--model is add_model_arguments' flag, one help for every command (no TOML-relative paths)",
    ("*", "dtype"): "--dtype is add_model_arguments' flag, one help for every command",
    ("*", "device"): "--device is add_model_arguments' flag, one help for every command",
    ("patching", "site"): "--site takes several comma-separated sites or 'all' (one result each); a TOML run one",
    ("patching", "method"): "--method also takes 'both' (one result per method); a TOML run one",
}
# (analysis, field) -> the command's conversion of its flag's text to the field's value (and why it has one)
FROM_TEXT: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("cache", "hooks"): comma_words,  # comma-separated hook names
    ("cache", "positions"): parse_positions,
    ("lens", "sites"): comma_words,
    ("lens", "positions"): parse_positions,
    ("probes", "layers"): parse_layers,
    ("pruning", "p"): lambda value: (value,),  # --p: the one point `interp prune` runs
    ("pruning", "q"): lambda value: (value,),
    ("pruning", "random_seeds"): parse_seeds,
    ("directions", "layers"): lambda text: parse_ints(text, "--layers"),
    ("directions", "positions"): lambda text: parse_ints(text, "--positions"),
    ("directions", "refusal_starts"): parse_words,
}
# (command path, field) -> why that parser's default is not the config's
OWN_DEFAULT = {
    (("probe", "train"), "model"): "--model only caches --prompts there; None stands for the bundled organism",
}

# ---- the library --------------------------------------------------------------------------------------

# (analysis, field) -> (the parameter's name, why it differs)
PARAMETER = {
    ("*", "model"): ("name_or_path", "load_model takes a name or a path"),
    ("cache", "store_dtype"): ("dtype", "a config's `dtype` is the model's; cache_activations' the store's"),
    ("probes", "label_field"): ("labels", "train_probes takes the labels, or the record field holding them"),
    ("dictionary", "store"): ("source", "train_dictionary reads a store, or rows held in memory"),
    ("pruning", "evaluation.samples_kept"): ("n_samples_kept", "the evaluator's name; -1 in TOML is its None"),
}
# (analysis or "*", field) -> why no function of the analysis takes it
NO_PARAMETER = {
    ("*", "allow_outside"): "a permission of the experiment run (run_experiment(allow_outside=...)), no analysis input",
    ("dictionary", "evaluation"): "held-out prompts for evaluate_dictionary, after training",
    ("dictionary", "eval_batch_size"): "evaluate_dictionary's batch_size, after training",
    **{
        (analysis, "name"): "names the experiment's figures and logs (of the functions, run_sweep's alone takes it)"
        for analysis in (
            "cache", "lens", "patching", "probes", "resampling", "directions", "recognition", "dictionary", "graph"
        )
    },
    ("cache", "chat_template"): "the prompts are formatted before cache_activations sees them",
    ("lens", "store"): "logit_lens' first argument is the model or an ActivationStore",
    ("lens", "chat_template"): "the prompts are formatted before logit_lens sees them",
    ("patching", "metric"): "activation_patching takes the metric function these name (interp.metrics)",
    ("patching", "answer"): "a token of the metric function (interp.metrics.logit_diff)",
    ("patching", "wrong"): "a token of the metric function (interp.metrics.logit_diff)",
    ("patching", "answer_field"): "read into the metric function's tokens",
    ("patching", "wrong_field"): "read into the metric function's tokens",
    ("patching", "method"): "which function runs: activation_patching or attribution_patching",
    ("patching", "normalize"): "wraps the metric function (interp.metrics.normalized)",
    ("patching", "chat_template"): "the prompts are formatted before activation_patching sees them",
    ("probes", "store"): "train_probes' first argument is the ActivationStore",
    ("resampling", "prompt"): "the Chain run_rollouts takes (Chain.from_text(prompt, solution))",
    ("resampling", "solution"): "the Chain run_rollouts takes (Chain.from_text(prompt, solution))",
    ("resampling", "backend"): "which backend class runs: LocalBackend or VLLMBackend",
    ("pruning", "harmful"): "run_sweep takes the loaded records",
    ("pruning", "benign"): "run_sweep takes the loaded records",
    ("pruning", "evaluation"): "run_sweep takes the PruningEvaluator it builds: its fields are checked below",
    ("pruning", "chat_template"): "the records are formatted before run_sweep sees them",
    ("pruning", "completions"): "the table of generate_completions: its fields are checked below",
    ("pruning", "completions.directory"): "where generate_completions' `out` lies, relative to --out",
    ("directions", "n_train"): "the prompts are trimmed before find_directions sees them",
    ("directions", "n_val"): "the prompts are trimmed before find_directions sees them",
    ("directions", "orthogonalize_out"): "save_orthogonalized's target directory, after find_directions",
    ("recognition", "mask"): "recognition_after_pruning takes the loaded PruningMask",
    ("recognition", "random_mask"): "recognition_after_pruning takes the loaded PruningMask",
    ("recognition", "random_seed"): "the seed of interp.pruning.random_mask, which makes the control mask",
}


def _registered_extractor(name: str) -> Any:
    from interp.experiments import registry

    return registry.resolve("extract", name)


def _default_embedder(name: str) -> Any:
    from interp.resampling import result

    return None if name == result.DEFAULT_EMBEDDER else name


# (analysis, field) -> (what the function's default stands for, given the config's default; why)
FUNCTION_DEFAULT_MEANS: dict[tuple[str, str], tuple[Callable[[Any], Any], str]] = {
    ("*", "model"): (lambda value: REQUIRED, "load_model needs a name; the configs' and commands' is defaults.MODEL"),
    ("resampling", "embedder"): (_default_embedder, "analyze's None is interp.resampling.result.DEFAULT_EMBEDDER"),
    ("resampling", "batch_size"): (lambda value: 50 if value is None else value, "None: all n (50) of a prefix"),
    ("pruning", "categories"): (lambda value: None if value == {} else value, "run_sweep's None: no categories"),
    ("pruning", "evaluation.judge"): (lambda value: None if value == "keyword" else value, "None: the keyword rule"),
    ("pruning", "evaluation.extract"): (_registered_extractor, "the registered extractor the name resolves to"),
    **{
        ("pruning", f"evaluation.{name}"): (lambda value: () if value is None else value, "no table: no records")
        for name in ("harmful", "benign_prompts", "benign_pairs", "harmful_pairs", "tasks")
    },
}


# ---- the comparison -----------------------------------------------------------------------------------


def listed(table: dict, analysis: str, name: str) -> bool:
    return (analysis, name) in table or ("*", name) in table


def plain(value: Any) -> Any:
    """A default as compared: lists as tuples, a missing default as REQUIRED."""
    if value is dataclasses.MISSING or value is inspect.Parameter.empty:
        return REQUIRED
    return tuple(value) if isinstance(value, list) else value


def config_fields(config: type, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """Every field of ``config`` as ``(dotted name, field)``, the fields of its nested config tables too."""
    found = []
    for item in dataclasses.fields(config):
        found.append((prefix + item.name, item))
        nested = [option for option in type_options(item.type) if dataclasses.is_dataclass(option)]
        if nested and nested[0] not in (DatasetSpec, InstructionsSpec):
            found += config_fields(nested[0], prefix=f"{prefix}{item.name}.")
    return found


def default_of(item: dataclasses.Field) -> Any:
    return item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default


def resolve(path: str) -> Callable:
    module, _, name = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        choices = next(action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        parser = choices[name]
    return parser


def flag_of(parsers: dict[tuple[str, ...], argparse.ArgumentParser], name: str):
    """``(command path, action)`` of the first parser with an option whose ``dest`` is ``name``, or None."""
    for path, parser in parsers.items():
        for action in parser._actions:
            if action.dest == name and action.option_strings:
                return path, action
    return None


def disagreements(analysis: str, root: argparse.ArgumentParser | None = None) -> list[str]:
    """What differs among ``analysis``' config, its command's flags and its functions (empty: all agree)."""
    twins, config = TWINS[analysis], ANALYSES[analysis]
    root = root or build_parser()
    parsers = {path: subparser(root, path) for path in twins.commands}
    found = []
    for name, item in config_fields(config):
        leaf, table = name.rsplit(".", 1)[-1], name.split(".")[0] if "." in name else None
        default, doc = plain(default_of(item)), item.metadata["doc"]
        if parsers and not listed(NO_FLAG, analysis, name):
            flag = flag_of(parsers, leaf)
            if flag is None:
                found.append(f"{analysis}: {name} has no flag on `interp {' '.join(twins.commands[0])}`")
            else:
                path, action = flag
                convert = FROM_TEXT.get((analysis, name), lambda value: value)
                shown = (
                    REQUIRED if action.required else None if action.default is None else plain(convert(action.default))
                )
                if shown != default and (path, leaf) not in OWN_DEFAULT:
                    found.append(
                        f"{analysis}: {name} defaults to {default!r}, its flag {action.option_strings[0]} "
                        f"to {action.default!r}"
                    )
                if (action.help or "").replace("%%", "%") != doc and not listed(OWN_HELP, analysis, name):
                    found.append(
                        f"{analysis}: {name}'s flag {action.option_strings[0]} says {action.help!r}, its doc {doc!r}"
                    )
        if listed(NO_PARAMETER, analysis, name):
            continue
        parameter = (PARAMETER.get((analysis, name)) or PARAMETER.get(("*", name)) or (leaf, ""))[0]
        paths = twins.tables.get(table, ()) if table else SHARED_FUNCTIONS if name in SHARED_FIELDS else twins.functions
        signatures = [(path, inspect.signature(resolve(path)).parameters) for path in paths]
        match = next(((path, known[parameter]) for path, known in signatures if parameter in known), None)
        if match is None:
            found.append(f"{analysis}: {name} is no parameter of {', '.join(paths)}")
            continue
        path, declared = match
        means = (
            FUNCTION_DEFAULT_MEANS.get((analysis, name)) or FUNCTION_DEFAULT_MEANS.get(("*", name)) or (plain, "")
        )[0]
        if plain(declared.default) != plain(means(default_of(item))):
            found.append(f"{analysis}: {name} defaults to {default!r}, {path}'s {parameter} to {declared.default!r}")
    return found


# ---- the tests ----------------------------------------------------------------------------------------


def test_every_analysis_has_its_twins_listed():
    assert set(TWINS) == set(ANALYSES)
    assert {name for name, twins in TWINS.items() if not twins.commands} == set(NO_COMMAND)


@pytest.mark.parametrize("analysis", sorted(ANALYSES))
def test_config_flags_and_functions_agree(analysis):
    assert disagreements(analysis) == []


def test_every_listed_reason_names_a_field_that_exists():
    names = {(analysis, name) for analysis, config in ANALYSES.items() for name, _ in config_fields(config)}
    shared = {name for _, name in names}
    for table in (NO_FLAG, OWN_HELP, FROM_TEXT, PARAMETER, NO_PARAMETER, FUNCTION_DEFAULT_MEANS):
        for analysis, name in table:
            assert (analysis, name) in names or (analysis == "*" and name in shared), (analysis, name)
    for path, name in OWN_DEFAULT:
        assert any(path in twins.commands for twins in TWINS.values()) and name in shared, (path, name)


# ---- the comparison finds what differs: each kind of mismatch planted once --------------------------------


def test_a_function_default_that_differs_from_the_config_is_found(monkeypatch):
    from interp.lens import logit_lens

    signature = inspect.signature(logit_lens)
    changed = [item.replace(default=7) if item.name == "top_k" else item for item in signature.parameters.values()]
    monkeypatch.setattr(logit_lens, "__signature__", signature.replace(parameters=changed), raising=False)
    assert disagreements("lens") == ["lens: top_k defaults to 5, interp.lens:logit_lens's top_k to 7"]


def test_a_config_default_that_differs_from_the_function_is_found(monkeypatch):
    from interp.experiments import ProbesConfig

    monkeypatch.setattr(ProbesConfig.__dataclass_fields__["cv"], "default", 3)
    assert disagreements("probes") == ["probes: cv defaults to 3, interp.probes:train_probes's cv to 5"]


def test_a_flag_whose_default_or_help_differs_from_the_config_is_found():
    root = build_parser()
    flags = {action.dest: action for action in subparser(root, ("direction", "find"))._actions}
    flags["max_kl"].default = 0.2
    flags["batch_size"].help = "prompts per batch"
    assert disagreements("directions", root) == [
        "directions: max_kl defaults to 0.1, its flag --max-kl to 0.2",
        "directions: batch_size's flag --batch-size says 'prompts per batch', its doc 'prompts per forward pass'",
    ]


def test_a_list_default_is_compared_after_the_commands_text_conversion():
    root = build_parser()
    flags = {action.dest: action for action in subparser(root, ("lens",))._actions}
    flags["sites"].default = "resid_pre"  # the text of ("resid_pre",), not of the config's two sites
    assert disagreements("lens", root) == [
        "lens: sites defaults to ('resid_pre', 'resid_post'), its flag --sites to 'resid_pre'"
    ]


def test_a_field_without_a_flag_or_a_reason_is_found(monkeypatch):
    import interp.commands.cache

    monkeypatch.setattr(interp.commands.cache, "CONFIG_FLAGS", ("hooks", "positions", "batch_size", "shard_size"))
    assert disagreements("cache") == [
        "cache: store_dtype has no flag on `interp cache`",
        "cache: chat_template has no flag on `interp cache`",
        "cache: chunk_tokens has no flag on `interp cache`",
        "cache: max_tokens has no flag on `interp cache`",
    ]
