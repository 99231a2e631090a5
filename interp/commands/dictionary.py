"""``interp dictionary train | eval | show``: sparse autoencoders and transcoders from an activation store."""

import argparse
from pathlib import Path

from interp.commands.common import add_model_arguments, add_prompt_arguments, add_subcommand, load_model_from_args
from interp.experiments.dictionary import DictionaryConfig
from interp.experiments.flags import add_config_flags

# the flags of DictionaryConfig's fields (its evaluation prompts are `interp dictionary eval --prompts FILE`)
CONFIG_FLAGS = (
    "store",
    "site",
    "output_site",
    "d_sae",
    "expansion",
    "k",
    "activation",
    "batch_size",
    "max_tokens",
    "lr",
    "lr_warmup_steps",
    "auxk_alpha",
    "dead_after_tokens",
    "skip_connection",
    "skip_first",
    "exclude_special",
    "seed",
    "checkpoint_every",
)

TRAIN_EXAMPLE = (
    "interp dictionary train --store runs/acts_all --site blocks.15.hook_resid_post --k 32 --out runs/sae_L15"
)
EVAL_EXAMPLE = (
    "interp dictionary eval --dictionary runs/sae_L15 --model smollm2-135m-instruct --prompts heldout.jsonl "
    "--out runs/sae_L15_eval"
)
SHOW_EXAMPLE = "interp dictionary show runs/sae_L15"


def register(subparsers) -> argparse.ArgumentParser:
    """Register ``interp dictionary`` with its ``train``, ``eval`` and ``show`` subcommands."""
    dictionary = add_subcommand(
        subparsers,
        "dictionary",
        None,
        help="Sparse dictionaries: train a TopK SAE or transcoder on a store cached at every position, evaluate one, "
        "or show what a dictionary directory (interp's, sparsify's or SAELens's) holds.",
        example=f"{TRAIN_EXAMPLE}\n  {EVAL_EXAMPLE}\n  {SHOW_EXAMPLE}",
    )
    commands = dictionary.add_subparsers(dest="dictionary_command", metavar="{train,eval,show}")
    train = add_subcommand(
        commands,
        "train",
        run_train,
        help="Train a TopK sparse autoencoder (or, with --output-site, a transcoder) on --site of --store; writes the "
        "dictionary in sparsify's format, its training log and checkpoint to --out (rerun to resume).",
        example=TRAIN_EXAMPLE,
    )
    add_config_flags(train, DictionaryConfig, CONFIG_FLAGS)
    train.add_argument("--out", required=True, type=Path, help="the dictionary's directory (resumed when rerun)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = add_subcommand(
        commands,
        "eval",
        run_eval,
        help="Evaluate a dictionary on prompts: FVU, L0, dead and dense latents, CE loss recovered and KL with it "
        "spliced in; writes evaluation.json/.safetensors/.html and the feature dashboard features.html to --out.",
        example=EVAL_EXAMPLE,
    )
    evaluate.add_argument("--dictionary", required=True, type=Path, help="a dictionary directory (any format)")
    evaluate.add_argument("--prompts", required=True, type=Path, help="prompt file (.jsonl/.csv/.txt)")
    evaluate.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    evaluate.add_argument("--features", type=int, default=300, help="features on the dashboard (the most frequent)")
    evaluate.add_argument(
        "--out", required=True, type=Path, help="output directory (an earlier result of this command there is replaced)"
    )
    add_model_arguments(evaluate)
    add_prompt_arguments(evaluate)

    show = add_subcommand(
        commands, "show", run_show, help="Print what a dictionary directory holds.", example=SHOW_EXAMPLE
    )
    show.add_argument("directory", type=Path, help="a dictionary directory (interp's, sparsify's or SAELens's)")
    return dictionary


def run_train(args: argparse.Namespace) -> int:
    from interp.dictionaries import train_dictionary
    from interp.store import ActivationStore

    settings = {name: getattr(args, name) for name in CONFIG_FLAGS if name not in ("store", "site", "output_site")}
    dictionary = train_dictionary(
        ActivationStore.open(args.store),
        args.site,
        args.out,
        output_site=args.output_site,
        progress=not args.quiet,
        **settings,
    )
    print(
        f"a {dictionary.kind} of {dictionary.d_sae} latents (k = {dictionary.k}) on {dictionary.site} written to "
        f"{args.out} (training curves: {args.out / 'training.html'})"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from interp.commands.common import load_prompts_from_args
    from interp.dictionaries import load_dictionary
    from interp.dictionaries.dashboard import write_dashboard
    from interp.dictionaries.evaluate import evaluate_dictionary

    dictionary = load_dictionary(args.dictionary)
    model = load_model_from_args(args)
    prompts = load_prompts_from_args(args, model)
    evaluation = evaluate_dictionary(dictionary, model, prompts, batch_size=args.batch_size, skip_first=1)
    evaluation.save(args.out)
    page = write_dashboard(evaluation, args.out / "features.html", limit=args.features)
    print(evaluation.summary())
    print(f"written to {args.out} (feature dashboard: {page})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from interp.dictionaries import load_dictionary

    dictionary = load_dictionary(args.directory)
    what = f"{dictionary.site} -> {dictionary.output_site}" if dictionary.is_transcoder else dictionary.site or "?"
    sparsity = f"k = {dictionary.k}" if dictionary.activation == "topk" else dictionary.activation
    print(
        f"{args.directory}: a {dictionary.kind}, {dictionary.d_in} -> {dictionary.d_sae} latents ({sparsity}) on "
        f"{what}; model {dictionary.model_id or 'unrecorded'}"
        + (f" (weights {dictionary.weights_hash[:12]})" if dictionary.weights_hash else "")
    )
    return 0
