"""How rollouts are sampled (``SamplingConfig``): read by the engine, and checked in a saved run's ``run.json``."""

from dataclasses import dataclass

from interp import defaults
from interp.errors import InterpError

DEFAULT_FORCED_SUFFIX = "\n</think>\n\nTherefore, the final answer is \\boxed{"


@dataclass(frozen=True)
class SamplingConfig:
    """How rollouts are sampled.

    Attributes:
        n: rollouts per prefix (the paper uses 100).
        temperature, top_p: sampling settings (paper: 0.6, 0.95).
        max_new_tokens: tokens per rollout (clamped to the model's context).
        seed: base seed; each (kind, prefix, batch) derives its own, so a resumed run draws
            the same samples as an uninterrupted one.
        batch_size: rollouts per generate call (all share one prefix computation).
        forced: also sample answers forced right after each prefix.
        n_forced: forced-answer rollouts per prefix (default: ``n``).
        forced_max_new_tokens: tokens per forced-answer rollout.
        forced_suffix: text appended to the prefix to force an answer.
    """

    n: int = defaults.RESAMPLE_N
    temperature: float = defaults.RESAMPLE_TEMPERATURE
    top_p: float = defaults.RESAMPLE_TOP_P
    max_new_tokens: int = defaults.RESAMPLE_MAX_NEW_TOKENS
    seed: int = defaults.RESAMPLE_SEED
    batch_size: int = 50
    forced: bool = True
    n_forced: int | None = None
    forced_max_new_tokens: int = defaults.RESAMPLE_FORCED_MAX_NEW_TOKENS
    forced_suffix: str = DEFAULT_FORCED_SUFFIX

    def __post_init__(self):
        checks = [
            (self.n >= 1, f"n={self.n}: need at least one rollout per prefix"),
            (self.batch_size >= 1, f"batch_size={self.batch_size}: must be >= 1"),
            (self.temperature > 0, f"temperature={self.temperature}: must be > 0 (sampling)"),
            (0 < self.top_p <= 1, f"top_p={self.top_p}: must be in (0, 1]"),
            (self.max_new_tokens >= 1, f"max_new_tokens={self.max_new_tokens}: must be >= 1"),
            (self.n_forced is None or self.n_forced >= 1, "n_forced must be >= 1 or None"),
            (
                self.forced_max_new_tokens >= 1,
                f"forced_max_new_tokens={self.forced_max_new_tokens}: must be >= 1 (the forced answer's tokens)",
            ),
        ]
        for ok, why in checks:
            if not ok:
                raise InterpError(f"bad sampling setting {why}")

    def count(self, kind: str) -> int:
        return self.n if kind == "resample" else (self.n_forced or self.n)


DEFAULT_SAMPLING = SamplingConfig()  # the settings of a run that names none
