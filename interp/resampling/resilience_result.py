"""The result of :func:`interp.resampling.resilience` (Thought Branches): how often an idea came back after
being resampled away, iteration by iteration. Also importable from ``interp.resampling`` and
``interp.resampling.engine``.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interp.errors import InterpError
from interp.io import ResultFormat
from interp.provenance import Provenance
from interp.results import Result

RESILIENCE_FORMAT = ResultFormat(kind="resilience", version=1, name="resilience result", meta_file="resilience.json",
                                 create="resilience(backend, context, target, embed).save(DIR)",
                                 load="ResilienceResult.load(DIR)")  # fmt: skip


@dataclass(frozen=True)
class ResilienceResult(Result):
    """How often an idea came back after being resampled away (Thought Branches).

    ``count`` is the number of reappearances before the idea was abandoned (or
    ``max_iterations`` was reached: ``abandoned`` is then False). ``steps`` records, per
    iteration, the replacement sentence and where (if anywhere) the idea reappeared:
    ``{"iteration", "replacement", "reappeared", "sentence"}``.
    """

    FORMAT = RESILIENCE_FORMAT
    FIGURE_FILE = "resilience.html"

    target: str
    count: int
    abandoned: bool
    steps: tuple[Mapping[str, Any], ...]
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        reappeared = sum(bool(step.get("reappeared")) for step in self.steps)
        if reappeared != self.count:
            raise InterpError(f"ResilienceResult counts {self.count} reappearances but its steps record {reappeared}.")

    def figure(self):
        """One marker per iteration: did the idea come back (1) or not (0); hover shows the replacement and the
        reappearance."""
        from interp import plots

        iterations = [str(step.get("iteration", i)) for i, step in enumerate(self.steps)]
        replacements = [
            plots.short(str(step.get("replacement") or "(every candidate kept the idea)"), 90) for step in self.steps
        ]
        endings = [
            "came back as: " + plots.short(str(step.get("sentence") or ""), 90)
            if step.get("reappeared")
            else "did not come back"
            for step in self.steps
        ]
        hover = [f"iteration {iteration}<br>replacement: {replacement}<br>{ending}"
                 for iteration, replacement, ending in zip(iterations, replacements, endings)]  # fmt: skip
        ending = "then abandoned" if self.abandoned else f"still there after {len(self.steps)} iterations"
        came_back = [float(bool(step.get("reappeared"))) for step in self.steps]
        return plots.line_plot(iterations, {"idea came back": came_back}, hover,
                               f"Resilience of {plots.short(self.target, 60)!r}: {self.count} reappearances, {ending}",
                               "resampling iteration", "came back (1) or not (0)")  # fmt: skip
