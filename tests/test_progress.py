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


def test_a_postfix_set_every_step_does_not_flood_a_log():
    """The probe solver and the tuned-lens trainer set a postfix per step; tqdm redraws on each unless told not to."""
    log = io.StringIO()
    bar = tqdm(total=200, file=log, desc="steps")
    for step in range(200):
        bar.set_postfix(step=step)
        bar.set_postfix_str(f"step {step}")
        bar.update()
    bar.close()
    assert log.getvalue().count("\r") <= 3, log.getvalue()[:500]
    live = _Terminal()
    bar = tqdm(total=3, file=live, desc="steps")
    for step in range(3):
        bar.set_postfix(step=step)
    bar.close()
    assert live.getvalue().count("step=") >= 3  # in a terminal each new postfix is still drawn at once
