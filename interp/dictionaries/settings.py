"""How a dictionary is trained (``train_dictionary``'s settings); light, so that configs and flags can read it."""

import math
from dataclasses import dataclass

from interp.errors import InterpError

TRAINED_ACTIVATIONS = ("topk", "batchtopk")


@dataclass(frozen=True)
class TrainingSettings:
    """How a dictionary is trained; a resumed run must have the same."""

    d_sae: int | None = None  # latents (default: expansion x the input width)
    expansion: int = 8
    k: int = 32
    activation: str = "topk"  # "topk": k per row; "batchtopk": k x batch per batch (interp.dictionaries.batch_topk)
    batch_size: int = 1024  # rows (tokens) per step
    max_tokens: int = 1_000_000
    lr: float | None = None  # default: 2e-4 / sqrt(d_sae / 2**14)
    lr_warmup_steps: int = 100
    auxk_alpha: float = 1 / 32
    dead_after_tokens: int = 1_000_000
    skip_connection: bool = False  # transcoders only
    skip_first: int = 1  # a prompt's first tokens left out (the BOS)
    exclude_special: bool = True  # special tokens (chat-template markers) left out
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        for name in ("expansion", "k", "batch_size", "max_tokens", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InterpError(f"{name} must be an integer >= 1, got {value!r}.")
        if self.activation not in TRAINED_ACTIVATIONS:
            raise InterpError(
                f"activation must be {' or '.join(TRAINED_ACTIVATIONS)} (what training fits), got {self.activation!r}."
            )
        if self.d_sae is not None and (not isinstance(self.d_sae, int) or self.d_sae < 1):
            raise InterpError(f"d_sae must be an integer >= 1, got {self.d_sae!r}.")
        if not (math.isfinite(self.auxk_alpha) and self.auxk_alpha >= 0):
            raise InterpError(f"auxk_alpha must be a finite number >= 0, got {self.auxk_alpha!r}.")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise InterpError(f"lr must be a finite number > 0, got {self.lr!r}.")

    @property
    def steps(self) -> int:
        return max(1, self.max_tokens // self.batch_size)
