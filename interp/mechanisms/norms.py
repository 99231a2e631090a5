"""An activation store's overview: the L2 norm of every prompt's activation at each cached layer of one site kind.

>>> norms = site_norms(store)          # doctest: +SKIP
>>> norms.figure(); norms.save("out")  # doctest: +SKIP
"""

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float

from interp import plots
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.provenance import Provenance
from interp.results import Result
from interp.sites import parse_site

FORMAT = ResultFormat(kind="site_norms", version=1, name="activation-norms overview", meta_file="norms.json",
                      create="site_norms(store).save(DIR) or `interp cache ... --out DIR` (writes DIR/overview.html)",
                      load="SiteNorms.load(DIR)")  # fmt: skip


@dataclass(frozen=True)
class SiteNorms(Result):
    """``values[prompt, layer]``: the L2 norm of each prompt's activation at one site kind (``kind``), per cached
    layer."""

    FORMAT = FORMAT
    FIGURE_FILE = "norms.html"

    kind: str
    layers: tuple[int, ...]
    prompts: tuple[str, ...]
    values: Float[np.ndarray, "prompt layer"]
    positions: str | list[int]
    model_id: str
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.prompts), len(self.layers)):
            raise InterpError(
                f"SiteNorms.values has shape {self.values.shape}; "
                f"expected (prompt, layer) = {(len(self.prompts), len(self.layers))}."
            )

    def figure(self):
        """Prompt x layer heatmap of the norms; hover shows the prompt."""
        return plots.activation_norms_figure(
            self.kind, self.layers, self.prompts, self.values, self.positions, self.model_id
        )


def has_layer_sites(store) -> bool:
    """Whether ``store`` holds a per-layer site (what ``site_norms`` draws); an embedding-only store does not."""
    return any(parse_site(name).layer is not None for name in store.hooks)


def site_norms(store, kind: str | None = None) -> SiteNorms:
    """L2 norm of every prompt's activation at each cached layer of ``kind`` in ``store`` (default: the first cached
    kind)."""
    sites = [(name, site.kind, site.layer) for name in store.hooks if (site := parse_site(name)).layer is not None]
    kind = kind or (sites[0][1] if sites else None)
    chosen = [(name, layer) for name, site_kind, layer in sites if site_kind == kind]
    if not chosen or kind is None:  # (a chosen site has a kind)
        cached = ", ".join(sorted({site_kind for _, site_kind, _ in sites})) or "none"
        raise InterpError(
            f"the store at {store.root} holds no per-layer {kind or 'site'} activations "
            f"(per-layer kinds cached: {cached})."
        )
    values = torch.stack([store[name].float().flatten(1).norm(dim=1) for name, _ in chosen], dim=1)
    return SiteNorms(kind, tuple(layer for _, layer in chosen), tuple(store.prompts.texts), values.numpy(),
                     store.positions, store.model_id, provenance=store.provenance)  # fmt: skip
