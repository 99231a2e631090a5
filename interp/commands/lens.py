"""``interp lens`` (the logit lens over a model's prompts or a cached store) and ``interp lens train`` (a tuned lens).

``interp lens --model M --prompts FILE --out DIR`` keeps working beside the ``train`` subcommand:
the subcommand is optional, so ``interp lens`` without it is the logit lens itself.
"""

import argparse
from pathlib import Path

from interp import defaults
from interp.commands.common import (
    add_model_arguments,
    add_prompt_arguments,
    add_subcommand,
    comma_words,
    load_model_from_args,
    load_prompts_from_args,
    parse_positions,
)
from interp.errors import InterpError
from interp.experiments.flags import Flag, add_config_flags
from interp.experiments.lens import LensConfig

# the flags of LensConfig's fields (its data set is --prompts FILE); --target was named before the config
CONFIG_FLAGS = ("store", "targets", "sites", "positions", "top_k", "metric", "chat_template")
FLAGS = {"targets": Flag(name="--target", repeat=True)}

LENS_EXAMPLE = "interp lens --model organism --prompts prompts.jsonl --target ' refuse' --positions last --out lens_out"
TUNED_EXAMPLE = (
    "interp lens --model smollm2-135m-instruct --prompts prompts.jsonl --translator runs/tuned_lens --out lens_out"
)
TRAIN_EXAMPLE = "interp lens train --model smollm2-135m-instruct --out runs/tuned_lens"


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "lens",
        run,
        help="Logit lens: decode every layer's residual stream; writes lens.html, lens.csv, lens.json, "
        "lens.safetensors. "
        "`interp lens train` trains a tuned lens, which --translator then applies.",
        example=f"{LENS_EXAMPLE}\n  {TUNED_EXAMPLE}\n  {TRAIN_EXAMPLE}",
    )
    add_model_arguments(parser)
    parser.add_argument("--prompts", type=Path, default=None, help="prompt file (with --model)")
    add_config_flags(parser, LensConfig, CONFIG_FLAGS, FLAGS)
    parser.add_argument(
        "--translator",
        type=Path,
        default=None,
        help="a tuned lens written by `interp lens train` (refused for another model)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (required; an earlier result of this command there is replaced)",
    )
    add_prompt_arguments(parser, chat_template=False)
    commands = parser.add_subparsers(dest="lens_command", metavar="[train]")
    _register_train(commands)


def _register_train(commands) -> None:
    train = add_subcommand(
        commands,
        "train",
        run_train,
        help="Train a tuned lens (Belrose et al. 2023): one affine translator per layer, minimising KL to the final "
        "distribution "
        "over text the model generates from --prompts (cached in --out/texts.jsonl) or over --texts. Writes "
        "tuned_lens.safetensors, "
        "tuned_lens.json and training.html to --out, and the held-out KL per layer, logit vs tuned lens, to "
        "--out/heldout_kl.",
        example=f"{TRAIN_EXAMPLE}\n  interp lens train --model organism --texts corpus.jsonl --steps 50 --out "
        "runs/organism_lens",
    )
    add_model_arguments(train)
    train.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory of the tuned lens (and of the generated texts it is trained on)",
    )
    train.add_argument(
        "--prompts",
        type=Path,
        default=Path(defaults.TUNED_LENS_PROMPTS),
        help="prompts the model continues; a 'split' field of 'heldout' holds a prompt out",
    )
    train.add_argument(
        "--texts", type=Path, default=None, help="train on the texts of this file instead of generating them"
    )
    train.add_argument("--text-field", default="text", help="JSONL/CSV field holding the text")
    train.add_argument(
        "--new-tokens", type=int, default=defaults.TUNED_LENS_NEW_TOKENS, help="tokens generated per prompt"
    )
    train.add_argument(
        "--temperature",
        type=float,
        default=defaults.TUNED_LENS_TEMPERATURE,
        help="sampling temperature of the generated text (0: greedy)",
    )
    train.add_argument(
        "--top-p", type=float, default=defaults.TUNED_LENS_TOP_P, help="nucleus threshold of the generated text"
    )
    train.add_argument("--steps", type=int, default=defaults.TUNED_LENS_STEPS, help="Adam steps on the KL")
    train.add_argument("--lr", type=float, default=defaults.TUNED_LENS_LR, help="Adam learning rate")
    train.add_argument(
        "--batch-tokens", type=int, default=defaults.TUNED_LENS_BATCH_TOKENS, help="tokens per Adam step"
    )
    train.add_argument(
        "--init",
        default=defaults.TUNED_LENS_INIT,
        choices=defaults.TUNED_LENS_INITS,
        help="least_squares: closed-form fit first; identity: as the paper",
    )
    train.add_argument(
        "--ridge", type=float, default=defaults.TUNED_LENS_RIDGE, help="least-squares ridge towards the identity"
    )
    train.add_argument(
        "--seed",
        type=int,
        default=defaults.TUNED_LENS_SEED,
        help="seed of the generated text, the held-out split and the Adam batches",
    )
    train.add_argument(
        "--heldout-fraction",
        type=float,
        default=defaults.TUNED_LENS_HELDOUT,
        help="texts held out for the evaluation when they carry no 'split' field",
    )
    train.add_argument("--batch-size", type=int, default=defaults.CACHE_BATCH_SIZE, help="texts per forward pass")
    train.add_argument(
        "--generate-batch-size",
        type=int,
        default=defaults.TUNED_LENS_GENERATE_BATCH_SIZE,
        help="prompts generated at once",
    )
    train.add_argument("--no-eval", action="store_true", help="skip the held-out KL evaluation")


def run(args: argparse.Namespace) -> int:
    from interp.io import atomic_write_figure
    from interp.lens import logit_lens

    if args.out is None:
        raise InterpError("give --out DIR, the directory the lens result is written to.")
    sites = comma_words(args.sites)
    targets = None if not args.targets else (args.targets[0] if len(args.targets) == 1 else args.targets)
    translator = None
    if args.translator is not None:
        from interp.lens import TunedLens

        translator = TunedLens.load(args.translator)  # checked against the activations' model by logit_lens
    if args.store is not None:
        from interp.store import ActivationStore

        result = logit_lens(
            ActivationStore.open(args.store), targets=targets, sites=sites, top_k=args.top_k, translator=translator
        )
    else:
        if args.prompts is None:
            raise InterpError("give --prompts FILE (with --model) or --store DIR.")
        model = load_model_from_args(args)
        prompts = load_prompts_from_args(args, model)
        result = logit_lens(
            model,
            prompts,
            targets=targets,
            sites=sites,
            positions=parse_positions(args.positions),
            top_k=args.top_k,
            translator=translator,
        )
    result.save(args.out)
    atomic_write_figure(args.out / "lens.html", result.figure(metric=args.metric))
    print(
        f"logit lens over {len(result.sites)} sites x {len(result.prompts)} prompts written to {args.out} (figure: "
        f"{args.out / 'lens.html'})"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    from interp.data import PromptSet
    from interp.lens import generate_texts, lens_kl, split_heldout, train_tuned_lens

    model = load_model_from_args(args)
    if args.texts is not None:
        texts = PromptSet.from_file(args.texts, text_field=args.text_field)
    else:
        prompts = PromptSet.from_file(_bundled(args.prompts), text_field=args.text_field)
        texts = generate_texts(
            model,
            prompts,
            max_new_tokens=args.new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            batch_size=args.generate_batch_size,
            cache=args.out,
        )
    train, heldout = split_heldout(texts, args.heldout_fraction, args.seed)
    lens = train_tuned_lens(
        model,
        train,
        steps=args.steps,
        lr=args.lr,
        batch_tokens=args.batch_tokens,
        init=args.init,
        ridge=args.ridge,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    lens.save(args.out)
    record = lens.training
    if record is None:  # train_tuned_lens records every training it runs
        raise InterpError(f"the tuned lens trained for {args.out} carries no training record.")
    print(
        f"tuned lens over {len(lens.sites)} sites trained on {record.n_tokens} tokens of {record.n_texts} texts in "
        f"{record.seconds:.0f} s; written to {args.out}"
    )
    if heldout is not None and not args.no_eval:
        result = lens_kl(model, heldout, translator=lens, batch_size=args.batch_size)
        result.save(args.out / "heldout_kl")
        print(
            f"held-out KL(final ‖ lens) per layer, nats ({result.n_tokens} tokens of {result.n_texts} texts; figure: "
            f"{args.out / 'heldout_kl' / 'lens_kl.html'}):"
        )
        print(result.table())
    return 0


def _bundled(path: Path) -> Path:
    """``path``, or the same relative path inside the interp checkout (where the bundled prompt sets live)."""
    if path.exists() or path.is_absolute():
        return path
    import interp

    candidate = Path(interp.__file__).resolve().parents[1] / path
    return candidate if candidate.exists() else path
