"""``analysis = "dictionary"``: a TopK sparse autoencoder or transcoder trained from an activation store, evaluated
on held-out prompts when they are given."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from interp.dictionaries.settings import TRAINED_ACTIVATIONS, TrainingSettings
from interp.experiments.base import DatasetSpec, Experiment, doc

_DEFAULTS = TrainingSettings()


@dataclass(frozen=True, kw_only=True)
class DictionaryConfig(Experiment):
    """A sparse dictionary trained on one site of a store cached at every position (positions = "all")."""

    ANALYSIS: ClassVar[str] = "dictionary"
    name: str = doc("experiment name, shown in figures and logs", default="dictionary")
    store: str = doc("an activation store cached at every position (positions 'all')", path=True)
    site: str = doc("the hook the dictionary reads, e.g. blocks.3.hook_resid_post")
    output_site: str | None = doc(
        "a transcoder's target hook, e.g. blocks.3.hook_mlp_out (its site then is blocks.3.ln2.hook_normalized)",
        default=None,
    )
    d_sae: int | None = doc("latents (default: expansion x the site's width)", default=_DEFAULTS.d_sae)
    expansion: int = doc("latents per input dimension, when d_sae is not given", default=_DEFAULTS.expansion)
    k: int = doc("latents active per token (TopK; BatchTopK: on average)", default=_DEFAULTS.k)
    activation: str = doc(
        "topk (k latents per token) or batchtopk (k x batch per batch; saved as a JumpReLU with one threshold)",
        choices=TRAINED_ACTIVATIONS,
        default=_DEFAULTS.activation,
    )
    batch_size: int = doc("tokens per training step", default=_DEFAULTS.batch_size)
    max_tokens: int = doc("tokens trained on (steps = max_tokens / batch_size)", default=_DEFAULTS.max_tokens)
    lr: float | None = doc("Adam's learning rate (default: 2e-4 / sqrt(d_sae / 2^14))", default=_DEFAULTS.lr)
    lr_warmup_steps: int = doc("steps of linear learning-rate warm-up", default=_DEFAULTS.lr_warmup_steps)
    auxk_alpha: float = doc("weight of the AuxK loss that revives dead latents", default=_DEFAULTS.auxk_alpha)
    dead_after_tokens: int = doc(
        "tokens without firing after which a latent counts as dead", default=_DEFAULTS.dead_after_tokens
    )
    skip_connection: bool = doc("a transcoder's linear skip connection", default=_DEFAULTS.skip_connection)
    skip_first: int = doc("each prompt's first tokens left out (its BOS)", default=_DEFAULTS.skip_first)
    exclude_special: bool = doc("special tokens (chat-template markers) left out", default=_DEFAULTS.exclude_special)
    seed: int = doc("seed of the initialisation and of the order of the tokens", default=_DEFAULTS.seed)
    checkpoint_every: int = doc(
        "steps between checkpoints (a killed run resumes from the last)", default=_DEFAULTS.checkpoint_every
    )
    evaluation: DatasetSpec | None = doc(
        "held-out prompts to evaluate the dictionary on (FVU, L0, CE loss recovered) and draw its features from",
        default=None,
    )
    eval_batch_size: int = doc("prompts per forward pass of the evaluation", default=8)

    def run(self, out: Path, model=None, progress: bool = True):
        from dataclasses import asdict

        from interp.dictionaries import train_dictionary
        from interp.dictionaries.dashboard import write_dashboard
        from interp.dictionaries.evaluate import DictionaryEval, evaluate_dictionary
        from interp.directories import claim_directory
        from interp.store import ActivationStore

        claim_directory(out, self.to_dict())
        settings = {name: getattr(self, name) for name in asdict(TrainingSettings())}
        dictionary = train_dictionary(
            ActivationStore.open(self.store),
            self.site,
            out / "dictionary",
            output_site=self.output_site,
            progress=progress,
            **settings,
        )
        if self.evaluation is None:
            return dictionary
        if (out / "evaluation" / DictionaryEval.FORMAT.meta_file).exists():
            return DictionaryEval.load(out / "evaluation")
        loaded = self.load_model(model)
        evaluation = evaluate_dictionary(
            dictionary,
            loaded,
            self.evaluation.prompts(loaded),
            batch_size=self.eval_batch_size,
            skip_first=self.skip_first,
            progress=progress,
        )
        write_dashboard(evaluation, out / "features.html")
        evaluation.save(out / "evaluation")
        return evaluation
