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
        lambda args: probe.print_help() or 0,
        help="Linear probes on h_last of every layer: train them on a store, or evaluate saved probes on another.",
        example=f"{TRAIN_EXAMPLE}\n  {CACHE_EXAMPLE}\n  {EVAL_EXAMPLE}",
    )
    commands = probe.add_subparsers(dest="probe_command", metavar="{train,eval}")

    train = add_subcommand(
        commands,
        "train",
        run_train,
        help="Train L2-regularised logistic-regression probes on h_last of every cached layer (all layers and folds in one "
        "batch) with stratified k-fold CV and a held-out split; print per-layer accuracy / AUROC / log-loss and write "
        "probe.safetensors, probe.json and probe.html to --out. With --prompts, the prompts are first cached to --store "
        "by --model (default: the bundled organism).",
        example=f"{TRAIN_EXAMPLE}\n  {CACHE_EXAMPLE}",
    )
    train.add_argument(
        "--store",
        required=True,
        type=Path,
        help="activation store cached with --positions last (written first when --prompts is given)",
    )
    train.add_argument("--out", required=True, type=Path, help="directory for the trained probes")
    train.add_argument(
        "--layers",
        default=defaults.PROBE_LAYERS,
        help="'all' (every resid_post, after the embeddings if cached) or comma-separated layer numbers / hook names",
    )
    train.add_argument("--cv", type=int, default=defaults.PROBE_CV, help="stratified cross-validation folds")
    train.add_argument(
        "--holdout", type=float, default=defaults.PROBE_HOLDOUT, help="held-out fraction, stratified (0 disables)"
    )
    train.add_argument("--C", type=float, default=defaults.PROBE_C, help="inverse L2 strength, as scikit-learn's C")
    train.add_argument("--seed", type=int, default=defaults.PROBE_SEED, help="seed of the splits")
    train.add_argument(
        "--positive",
        default=None,
        help="label of the positive class (default: the later of two sorted labels; one-vs-rest with more)",
    )
    train.add_argument("--max-iter", type=int, default=defaults.PROBE_MAX_ITER, help="L-BFGS iterations at most")
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
    add_prompt_arguments(train)
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
    evaluate.add_argument(
        "--label-field", default=defaults.LABEL_FIELD, help="prompt record field holding the class label"
    )
    evaluate.add_argument("--out", type=Path, default=None, help="directory for probe_eval.json and probe_eval.html")
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
            "--model is used to cache --prompts; pass --prompts FILE too, or drop --model to train on the existing --store."
        )
    result = train_probes(
        open_store(args.store), label_field, layers=parse_layers(args.layers), cv=args.cv, holdout=args.holdout,
        C=args.C, seed=args.seed, positive=args.positive, max_iter=args.max_iter,
    )  # fmt: skip
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
