"""``analysis = "probes"``: linear probes on h_last of every layer of an activation store."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from interp import defaults
from interp.experiments.base import Experiment, doc


@dataclass(frozen=True, kw_only=True)
class ProbesConfig(Experiment):
    """Linear probes on h_last of every layer of a store (cache the prompts first: analysis = "cache", positions
    "last")."""

    ANALYSIS: ClassVar[str] = "probes"
    name: str = doc("experiment name, shown in figures and logs", default="probes")
    store: str = doc(
        "an activation store cached at the last position, e.g. the store/ of a cache experiment", path=True
    )
    label_field: str = doc("the prompt record field holding the class label", default=defaults.LABEL_FIELD)
    layers: str | tuple[int | str, ...] = doc(
        "'all' (every cached resid_post, after the embeddings if cached), or layer numbers / hook names",
        default=defaults.PROBE_LAYERS,
    )
    cv: int = doc("stratified cross-validation folds", default=defaults.PROBE_CV)
    holdout: float = doc("held-out fraction, stratified (0: none)", default=defaults.PROBE_HOLDOUT)
    C: float = doc("inverse L2 strength, as scikit-learn's C", default=defaults.PROBE_C)
    seed: int = doc("seed of the folds and the held-out split", default=defaults.PROBE_SEED)
    positive: str | None = doc(
        "the positive class (default: the later of two sorted labels; one-vs-rest with more)", default=None
    )
    max_iter: int = doc("L-BFGS iterations at most", default=defaults.PROBE_MAX_ITER)
    top_features: int | None = doc(
        "k-sparse probes: each probe reads only the k features with the largest class-mean difference on its "
        "training prompts (default: dense probes on every feature)",
        default=None,
    )

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.probes import ProbeResult, train_probes
        from interp.store import ActivationStore

        def compute():
            return train_probes(
                ActivationStore.open(self.store),
                self.label_field,
                layers=self.layers if isinstance(self.layers, str) else list(self.layers),
                cv=self.cv,
                holdout=self.holdout,
                C=self.C,
                seed=self.seed,
                positive=self.positive,
                max_iter=self.max_iter,
                progress=progress,
                top_features=self.top_features,
            )

        return self._once(out, (self.store,), ProbeResult.load, compute)
