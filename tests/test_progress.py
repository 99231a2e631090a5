"""Progress bars write a few lines to a log, and stay live in a terminal."""

import io
import time

from interp.progress import LOG_INTERVAL_SECONDS, tqdm


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _redraws(stream, steps: int = 400) -> int:
    for _ in tqdm(range(steps), file=stream, desc="work"):
        time.sleep(0.001)
    return stream.getvalue().count("\r")


def test_a_log_gets_the_first_and_the_last_line_only():
    assert LOG_INTERVAL_SECONDS >= 10
    log = io.StringIO()
    assert _redraws(log) <= 3, log.getvalue()
    assert "400/400" in log.getvalue()


def test_a_terminal_keeps_the_live_bar():
    assert _redraws(_Terminal()) >= 3  # tqdm's own 0.1 s redraws over the ~0.5 s loop
