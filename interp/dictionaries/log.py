"""The curves of a dictionary's training: FVU, AuxK loss, L0 and the dead fraction at every step."""

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from interp.errors import InterpError
from interp.io import ResultFormat
from interp.provenance import Provenance
from interp.results import Result

FORMAT = ResultFormat(
    kind="dictionary_training",
    version=1,
    name="dictionary training log",
    meta_file="training.json",
    create="interp.dictionaries.train_dictionary(store, site, DIR) (writes DIR/training.json)",
    load="TrainingLog.load(DIR)",
)


@dataclass(frozen=True)
class TrainingLog(Result):
    """One value per training step: ``fvu`` (fraction of variance unexplained), ``auxk_loss``, ``l0`` (latents
    active per token) and ``dead_fraction`` (latents silent for ``dead_after_tokens``)."""

    FORMAT = FORMAT
    FIGURE_FILE = "training.html"

    steps: Float[np.ndarray, " step"]
    fvu: Float[np.ndarray, " step"]
    auxk_loss: Float[np.ndarray, " step"]
    l0: Float[np.ndarray, " step"]
    dead_fraction: Float[np.ndarray, " step"]
    tokens: int
    site: str
    output_site: str
    d_sae: int
    settings: str  # the TrainingSettings, as JSON
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        n = len(self.steps)
        for name in ("fvu", "auxk_loss", "l0", "dead_fraction"):
            if len(getattr(self, name)) != n:
                raise InterpError(f"TrainingLog.{name} has {len(getattr(self, name))} values for {n} steps.")

    def figure(self):
        from plotly.subplots import make_subplots

        figure = make_subplots(rows=1, cols=3, subplot_titles=("FVU", "L0 (active latents per token)", "dead latents"))
        for column, (values, name) in enumerate(((self.fvu, "FVU"), (self.l0, "L0"), (self.dead_fraction, "dead")), 1):
            figure.add_scatter(
                x=self.steps,
                y=values,
                mode="lines",
                name=name,
                row=1,
                col=column,
                hovertemplate=f"step %{{x}}<br>{name} %{{y:.4g}}<extra></extra>",
            )
            figure.update_xaxes(title_text="training step", row=1, col=column)
        what = f"{self.site} -> {self.output_site}" if self.output_site else self.site
        figure.update_layout(
            title=f"Training a {self.d_sae}-latent dictionary on {what} ({self.tokens:,} tokens)", showlegend=False
        )
        return figure
