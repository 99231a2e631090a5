"""An append-safe JSONL log: the rollout store's disk format."""

import json
import os
from pathlib import Path
from typing import Iterable

from interp.io import read_jsonl as _read_jsonl


def repair_jsonl(path: Path) -> int:
    """Cut a partly written last line (a write interrupted mid-line); returns bytes cut."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        return len(data) - keep


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append records as JSON lines in one write, flushed and fsynced.

    A crash can leave at most one partial last line, which :func:`repair_jsonl` (run before
    every append) and :func:`read_jsonl` drop; whole lines already written are never lost.
    """
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if not lines:
        return
    repair_jsonl(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL log; a partial last line (an interrupted write, even one cut inside a character) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    return _read_jsonl(path, torn_tail=True, hint="the file was edited or corrupted: delete that line and run again to regenerate those rollouts")
