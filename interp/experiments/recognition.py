"""``analysis = "recognition"``: recognition vs generation after pruning as a TOML experiment.

Linear probes on h_last at ``hook_embed`` and every ``resid_post``, harmful vs benign requests:
trained on the unpruned model and applied frozen to the model pruned with ``mask`` (a saved
``PruningMask``, e.g. ``OUT/masks/LABEL.safetensors`` of a pruning run with ``save_masks = true``),
and retrained on it; held-out AUROC per layer, with a random mask of the same size per matrix as
the control (``interp.pruning.recognition_after_pruning``). The ``RecognitionResult`` is written to
``--out`` beside ``config.json``; a rerun of the same config, data and mask files loads it instead of
computing again.

>>> config = load_config("circuits/real_harm_pruning/real_harm_recognition.toml")          # doctest: +SKIP
>>> result = run_experiment(config, "runs/real_harm_recognition")       # doctest: +SKIP
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from interp import defaults
from interp.errors import InterpError
from interp.experiments.base import DatasetSpec, Experiment, doc


@dataclass(frozen=True)
class MaskFile:
    """A saved mask file, as an input of the experiment: its bytes are part of the inputs hash."""

    path: str

    def load(self) -> list[dict[str, Any]]:
        return [{"sha256": hashlib.sha256(Path(self.path).read_bytes()).hexdigest()}]


@dataclass(frozen=True, kw_only=True)
class RecognitionConfig(Experiment):
    """Recognition vs generation after pruning: h_last probes per layer, unpruned model vs masked (frozen and
    retrained), with a random control."""

    ANALYSIS: ClassVar[str] = "recognition"
    name: str = doc("experiment name, shown in figures and logs", default="recognition")
    harmful: DatasetSpec = doc("harmful requests (the probes' positive class)")
    benign: DatasetSpec = doc("benign requests")
    mask: str = doc(
        "the mask to apply: a saved PruningMask .safetensors (a pruning run with save_masks = true writes "
        "OUT/masks/LABEL.safetensors); "
        "relative to the TOML file",
        path=True,
    )
    random_mask: str | None = doc(
        "the control mask file (e.g. OUT/masks/random_..._seed0.safetensors); default: "
        "interp.pruning.random_mask(mask, random_seed)",
        path=True,
        default=None,
    )
    random_seed: int = doc(
        "without a random_mask file, the control is interp.pruning.random_mask(mask, random_seed), as a pruning run "
        "makes its "
        "random_..._seedN mask from the set-difference mask it saves",
        default=0,
    )
    chat_template: bool = doc(
        "wrap each request as a user turn of the tokenizer's chat template, with the generation prompt (h_last = "
        "where the answer starts)",
        default=True,
    )
    batch_size: int = doc("prompts per forward pass", default=defaults.CACHE_BATCH_SIZE)
    cv: int = doc("the probes' stratified cross-validation folds", default=defaults.PROBE_CV)
    holdout: float = doc("held-out fraction, stratified: every AUROC is measured on it", default=defaults.PROBE_HOLDOUT)
    C: float = doc("the probes' inverse L2 strength, as scikit-learn's C", default=defaults.PROBE_C)
    seed: int = doc("seed of the folds and the held-out split", default=defaults.PROBE_SEED)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InterpError(f"batch_size must be at least 1, got {self.batch_size}.")
        if not 0 < self.holdout < 1:
            raise InterpError(
                "holdout must be a fraction in (0, 1): the AUROCs are measured on the held-out prompts; got "
                f"{self.holdout!r}."
            )

    def masks(self):
        """(mask, random control) read from their files; the control made from ``mask`` when no file is given."""
        from interp.pruning import PruningMask
        from interp.pruning import random_mask as make_random_mask

        self.check_files()
        mask = PruningMask.load(self.mask)
        return mask, PruningMask.load(self.random_mask) if self.random_mask is not None else make_random_mask(
            mask, seed=self.random_seed
        )

    def check_files(self) -> None:
        for key, path in (("mask", self.mask), ("random_mask", self.random_mask)):
            if path is not None and not Path(path).is_file():
                raise InterpError(
                    f"{key} {path} is not a file; point it at a saved mask (a pruning run with save_masks = true "
                    "writes "
                    f"OUT/masks/LABEL.safetensors): --set {key}=/path/to/mask.safetensors."
                )

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.pruning.recognition import RecognitionResult, check_mask

        self.check_files()  # refused before anything loads

        def compute():
            from interp.pruning import recognition

            mask, control = self.masks()  # read before the model loads
            loaded = self.load_model(model)
            for found, path in ((mask, self.mask), (control, self.random_mask)):
                if path is not None:
                    check_mask(loaded, found, f"the mask file {path}")
            harmful, benign = (spec.prompts() for spec in (self.harmful, self.benign))
            return recognition.recognition_after_pruning(
                loaded,
                mask,
                harmful,
                benign,
                random_mask=control,
                chat_template=self.chat_template,
                batch_size=self.batch_size,
                cv=self.cv,
                holdout=self.holdout,
                C=self.C,
                seed=self.seed,
                progress=progress,
            )

        sources = (
            self.harmful,
            self.benign,
            MaskFile(self.mask),
            MaskFile(self.random_mask) if self.random_mask else None,
        )
        return self._once(out, sources, RecognitionResult.load, compute)
