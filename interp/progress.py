"""Progress bars: live in a terminal or a notebook, a few lines in a log.

``interp.progress.tqdm`` is ``tqdm.auto.tqdm`` with one difference: when the bar writes to something that is not a
terminal (``make demo > log``, a CI job, a batch system), it redraws at most every ``LOG_INTERVAL_SECONDS``, so a
log gets the first line, one line per interval and the last line instead of one line per update.
"""

import sys
from typing import Any

from tqdm.auto import tqdm as _tqdm

LOG_INTERVAL_SECONDS = 30.0


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(*args, **kwargs)``, redrawn every ``LOG_INTERVAL_SECONDS`` at most when not writing to a terminal."""
    if not _live(kwargs.get("file") or sys.stderr):
        kwargs.setdefault("mininterval", LOG_INTERVAL_SECONDS)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_SECONDS)
    return _tqdm(*args, **kwargs)


def _live(stream: Any) -> bool:
    """True for a terminal, and in a notebook (its widget bar is redrawn in place, not appended)."""
    if "notebook" in getattr(_tqdm, "__module__", ""):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
