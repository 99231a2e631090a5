"""``analysis = "lens"``: the logit lens of a prompt set or of an activation store."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from interp import defaults
from interp.errors import InterpError
from interp.experiments.base import DatasetSpec, Experiment, check_choices, doc, positions_argument


@dataclass(frozen=True, kw_only=True)
class LensConfig(Experiment):
    """Logit lens: decode the residual stream of every layer through the final norm and unembedding."""

    ANALYSIS: ClassVar[str] = "lens"
    name: str = doc("experiment name, shown in figures and logs", default="lens")
    prompts: DatasetSpec | None = doc("the prompts, run through the model (or give `store`)", default=None)
    store: str | None = doc(
        "an activation store directory to read instead of running the model", path=True, default=None
    )
    targets: str | tuple[str, ...] | None = doc(
        "the token to follow (text, or id:123): one for every prompt, or one per prompt "
        "(default: the model's own prediction)",
        default=None,
    )
    sites: tuple[str, ...] = doc(
        "residual sites (resid_pre, resid_mid, resid_post), or a sublayer's output (attn_out, mlp_out) decoded alike",
        default=defaults.LENS_SITES,
    )
    positions: str | tuple[int, ...] = doc(
        "'last', 'all' or explicit positions (with prompts)", default=defaults.LENS_POSITIONS
    )
    top_k: int = doc("top tokens kept per cell", default=defaults.LENS_TOP_K)
    metric: str = doc(
        f"what lens.html shows: {', '.join(defaults.LENS_METRICS)}",
        choices=defaults.LENS_METRICS,
        default=defaults.LENS_METRIC,
    )
    chat_template: bool = doc("wrap each prompt as a user turn with the tokenizer's chat template", default=False)

    def __post_init__(self) -> None:
        if (self.prompts is None) == (self.store is None):
            raise InterpError(
                "a lens experiment needs exactly one of a [prompts] table or `store` (an activation store directory)."
            )
        check_choices(self)

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.io import atomic_write_figure
        from interp.lens import LensResult, logit_lens

        def compute():
            targets = list(self.targets) if isinstance(self.targets, tuple) else self.targets
            if self.store is not None:
                from interp.store import ActivationStore

                store = ActivationStore.open(self.store)
                return logit_lens(store, targets=targets, sites=list(self.sites), top_k=self.top_k)
            if self.prompts is None:  # refused by __post_init__
                raise InterpError("a lens experiment needs a [prompts] table or `store`.")
            loaded = self.load_model(model)
            return logit_lens(
                loaded,
                self.prompts.prompts(loaded, self.chat_template),
                targets=targets,
                sites=list(self.sites),
                positions=positions_argument(self.positions),
                top_k=self.top_k,
            )

        def write(result, directory: Path) -> None:
            result.save(directory)
            atomic_write_figure(directory / "lens.html", result.figure(metric=self.metric))

        return self._once(out, (self.prompts, self.store), LensResult.load, compute, write)
