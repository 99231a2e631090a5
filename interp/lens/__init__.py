"""Lenses: read each layer's residual stream as a next-token distribution.

- ``logit``: the logit lens, through the model's own final norm and unembedding (``logit_lens``, ``LensResult``).
- ``tuned``: the tuned lens (Belrose et al. 2023), a learned affine translator per layer first
  (``train_tuned_lens``, ``TunedLens``, ``lens_kl``; ``logit_lens(..., translator=lens)``).

>>> result = logit_lens(model, prompts, targets=" sure")            # doctest: +SKIP
>>> lens = train_tuned_lens(model, generate_texts(model, prompts))   # doctest: +SKIP
"""

from interp.lens.logit import LensResult, Metric, Translator, logit_lens
from interp.lens.texts import generate_texts, split_heldout
from interp.lens.tuned import (
    Init,
    LensKL,
    TrainingRecord,
    TunedLens,
    lens_kl,
    lens_sites,
    train_tuned_lens,
)

__all__ = [
    "Init",
    "LensKL",
    "LensResult",
    "Metric",
    "TrainingRecord",
    "Translator",
    "TunedLens",
    "generate_texts",
    "lens_kl",
    "lens_sites",
    "logit_lens",
    "split_heldout",
    "train_tuned_lens",
]
