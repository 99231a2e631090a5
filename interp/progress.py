"""Progress bars: live in a terminal or a notebook, a few lines in a log.

``interp.progress.tqdm`` is ``tqdm.auto.tqdm`` with one difference: when the bar writes to something that is not a
terminal (``make demo > log``, a CI job, a batch system), it redraws at most every ``LOG_INTERVAL_SECONDS``, so a
log gets the first line, one line per interval and the last line instead of one line per update.
"""

import sys
from typing import Any

from tqdm.auto import tqdm as _tqdm

LOG_INTERVAL_SECONDS = 30.0


class _LogBar(_tqdm):
    """A bar writing to a log: a new postfix waits for the next redraw instead of forcing one (tqdm's default)."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(*args, **kwargs)``, redrawn every ``LOG_INTERVAL_SECONDS`` at most when not writing to a
    terminal."""
    if _live(kwargs.get("file") or sys.stderr):
        return _tqdm(*args, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL_SECONDS)
    kwargs.setdefault("maxinterval", LOG_INTERVAL_SECONDS)
    return _LogBar(*args, **kwargs)


def _live(stream: Any) -> bool:
    """True for a terminal, and in a notebook (its widget bar is redrawn in place, not appended)."""
    if "notebook" in getattr(_tqdm, "__module__", ""):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
