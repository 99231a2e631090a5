"""``interp probe train`` and ``interp probe eval``: thin layers over ``train_probes`` and ``ProbeResult.evaluate``."""

import argparse
from pathlib import Path

from interp import defaults
from interp.commands.common import (
    add_model_arguments,
    add_prompt_arguments,
    add_subcommand,
    load_model_from_args,
    load_prompts_from_args,
)
from interp.errors import InterpError
from interp.experiments.flags import add_config_flags
from interp.experiments.probes import ProbesConfig

# the flags of ProbesConfig's fields
CONFIG_FLAGS = ("store", "label_field", "layers", "cv", "holdout", "C", "seed", "positive", "max_iter", "top_features")

TRAIN_EXAMPLE = "interp probe train --store runs/harm_cache --label-field label --out runs/harm_probe"
CACHE_EXAMPLE = (
    "interp probe train --model organism --prompts harm_prompts.jsonl --store runs/harm_cache --out runs/harm_probe"
)
EVAL_EXAMPLE = "interp probe eval --probe runs/harm_probe --store runs/harm_test_cache --label-field label"


def register(subparsers) -> argparse.ArgumentParser:
    """Register ``interp probe`` with its ``train`` and ``eval`` subcommands; returns the ``probe`` parser."""
    probe = add_subcommand(
        subparsers,
        "probe",
        None,
        help="Linear probes on h_last of every layer: train them on a store, or evaluate saved probes on another.",
        example=f"{TRAIN_EXAMPLE}\n  {CACHE_EXAMPLE}\n  {EVAL_EXAMPLE}",
    )
    commands = probe.add_subparsers(dest="probe_command", metavar="{train,eval}")

    train = add_subcommand(
        commands,
        "train",
        run_train,
        help="Train L2-regularised logistic-regression probes on h_last of every cached layer (all layers and folds in "
        "one "
        "batch) with stratified k-fold CV and a held-out split; print per-layer accuracy / AUROC / log-loss and write "
        "probe.safetensors, probe.json and probe.html to --out. With --prompts, the prompts are first cached to "
        "--store "
        "by --model (default: the bundled organism).",
        example=f"{TRAIN_EXAMPLE}\n  {CACHE_EXAMPLE}",
    )
    add_config_flags(train, ProbesConfig, CONFIG_FLAGS)
    train.add_argument(
        "--out",
        required=True,
        type=Path,
        help="directory for the trained probes (an earlier result of this command there is replaced)",
    )
    train.add_argument(
        "--prompts",
        type=Path,
        default=None,
        help="prompt file (.jsonl/.csv/.txt) to cache into --store with --model first",
    )
    train.add_argument(
        "--batch-size", type=int, default=defaults.CACHE_BATCH_SIZE, help="prompts per forward pass when caching"
    )
    add_model_arguments(train)
    add_prompt_arguments(train, label_field=False)
    train.set_defaults(model=None)  # only used with --prompts; None means the bundled organism there

    evaluate = add_subcommand(
        commands,
        "eval",
        run_eval,
        help="Apply saved probes to a store of the same model (weights hash checked) and print accuracy, AUROC and "
        "log-loss per layer; with --out also write probe_eval.json and probe_eval.html.",
        example=EVAL_EXAMPLE,
    )
    evaluate.add_argument("--probe", required=True, type=Path, help="directory written by `interp probe train`")
    evaluate.add_argument(
        "--store", required=True, type=Path, help="activation store of the same model, cached with --positions last"
    )
    add_config_flags(evaluate, ProbesConfig, ("label_field",))
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for probe_eval.json and probe_eval.html (an earlier result of this command there is replaced)",
    )
    return probe


def parse_layers(text: str) -> str | list[int | str]:
    """'all', or comma-separated layer numbers and hook names."""
    if text.strip() == "all":
        return "all"
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise InterpError("--layers is empty; pass 'all' or comma-separated layer numbers like '0,3,6'.")
    return [int(part) if part.lstrip("-").isdigit() else part for part in parts]


def run_train(args: argparse.Namespace) -> int:
    from interp.probes import train_probes

    label_field = args.label_field
    if args.prompts is not None:
        from interp.store import cache_activations

        args.model = args.model or defaults.MODEL
        model = load_model_from_args(args)
        prompts = load_prompts_from_args(args, model)  # --label-field is read into each record's "label"
        cache_activations(
            model,
            prompts,
            hooks=["embed", "resid_post"],
            positions="last",
            out=args.store,
            batch_size=args.batch_size,
            resume=True,
        )
        label_field = "label"
    elif args.model is not None:
        raise InterpError(
            "--model is used to cache --prompts; pass --prompts FILE too, or drop --model to train on the existing "
            "--store."
        )
    result = train_probes(
        open_store(args.store),
        label_field,
        layers=parse_layers(args.layers),
        cv=args.cv,
        holdout=args.holdout,
        C=args.C,
        seed=args.seed,
        positive=args.positive,
        max_iter=args.max_iter,
        top_features=args.top_features,
    )
    print(result.summary())
    out = result.save(args.out)
    print(f"saved probes to {out} (figure: {out / 'probe.html'})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from interp.probes import load

    evaluation = load(args.probe).evaluate(open_store(args.store), args.label_field)
    print(evaluation.summary())
    if args.out is not None:
        print(f"saved the evaluation to {evaluation.save(args.out)}")
    return 0


def open_store(directory: Path):
    from interp.store import ActivationStore

    return ActivationStore.open(directory)
