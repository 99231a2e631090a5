"""An append-safe JSONL log: the rollout store's disk format, and the checks of a run directory when it is read."""

import json
import os
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

from interp.errors import InterpError
from interp.io import read_jsonl as _read_jsonl
from interp.resampling.config import SamplingConfig


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
    """Records of a JSONL log; a partial last line (an interrupted write, even one cut inside a character) is
    ignored."""
    path = Path(path)
    if not path.exists():
        return []
    return _read_jsonl(
        path,
        torn_tail=True,
        hint="the file was edited or corrupted: delete that line and run again to regenerate those rollouts",
    )


# ---- the checks of a run directory (run.json and rollouts.jsonl), done once when it is read ----

RERUN = "run `interp resample` again into a new --out (or restore the file)"
# key of run.json -> the JSON types it may have
_RUN_KEYS = {
    "prompt": (str,),
    "solution": (str,),
    "sentences": (list,),
    "contexts": (list,),
    "config": (dict,),
    "gt_answer": (str, type(None)),
}
# key of a rollout record -> the JSON types it may have
_RECORD_KEYS = {
    "kind": (str,),
    "prefix": (int,),
    "rollout": (int,),
    "continuation": (str,),
    "answer": (str, type(None)),
    "is_correct": (bool, type(None)),
}
ROLLOUT_KINDS = ("resample", "forced")


def read_run_manifest(path: Path) -> dict:
    """The checked ``run.json`` of a rollout run: its keys and types, one context per prefix, valid settings."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InterpError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); {RERUN}.") from None
    except json.JSONDecodeError as error:
        raise InterpError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); {RERUN}.") from None
    except RecursionError:
        raise InterpError(f"{path} is nested too deeply to be a run manifest; {RERUN}.") from None
    except OSError as error:
        raise InterpError(f"cannot read {path}: {error.strerror or error}.") from None
    if not isinstance(manifest, dict):
        raise InterpError(f"{path} holds a JSON {type(manifest).__name__}, not a run manifest (an object); {RERUN}.")
    for key, kinds in _RUN_KEYS.items():
        if not _has_type(manifest.get(key), kinds):
            raise InterpError(
                f"{path} is damaged: {key!r} is {type(manifest.get(key)).__name__} {manifest.get(key)!r:.60}; {RERUN}."
            )
    sentences, contexts = manifest["sentences"], manifest["contexts"]
    if not all(isinstance(text, str) for text in sentences + contexts) or len(contexts) != len(sentences) + 1:
        raise InterpError(
            f"{path} is damaged: it needs one string per sentence and one context per prefix "
            f"({len(sentences)} sentences, {len(contexts)} contexts); {RERUN}."
        )
    _check_sampling_config(manifest["config"], path)
    return manifest


def _check_sampling_config(config: dict, path: Path) -> None:
    known = {item.name: item for item in fields(SamplingConfig)}
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise InterpError(
            f"{path} is damaged: unknown sampling setting {unknown[0]!r} in 'config' "
            f"(known: {', '.join(known)}); {RERUN}."
        )
    for name, value in config.items():
        default = getattr(SamplingConfig, name, None)
        kinds = (
            (int, type(None))
            if name == "n_forced"
            else (int, float)
            if isinstance(default, float)
            else (type(default),)
        )
        if not _has_type(value, kinds):
            raise InterpError(
                f"{path} is damaged: the sampling setting {name!r} is {type(value).__name__} {value!r:.60}; {RERUN}."
            )
    SamplingConfig(**config)  # its own range checks: an InterpError naming the setting


def check_rollout_records(records: list[dict], path: Path, n_sentences: int) -> list[dict]:
    """``records`` if each has the keys and types of a rollout and a prefix ``0..n_sentences``; else InterpError naming
    the record."""
    for number, record in enumerate(records, start=1):
        problem = next((f"{key!r} is {type(record.get(key)).__name__} {record.get(key)!r:.40}"
                        for key, kinds in _RECORD_KEYS.items() if not _has_type(record.get(key), kinds)),
                       None)  # fmt: skip
        if problem is None and record["kind"] not in ROLLOUT_KINDS:
            problem = f"unknown kind {record['kind']!r} (known: {', '.join(ROLLOUT_KINDS)})"
        if problem is None and not (0 <= record["prefix"] <= n_sentences and record["rollout"] >= 0):
            problem = (
                f"prefix {record['prefix']} / rollout {record['rollout']} "
                f"is outside the chain's prefixes 0..{n_sentences}"
            )
        if problem is not None:
            raise InterpError(
                f"{path}, record {number}: {problem}; delete that line and run again to regenerate those rollouts."
            )
    return records


def _has_type(value, kinds: tuple[type, ...]) -> bool:
    """JSON typing: a bool is not an int (nor a number), an int is a number."""
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)
