"""Output directories: one writer at a time (a lock file holding its pid) and one experiment per directory.

An experiment directory names what it holds in ``config.json``; a rerun of the same experiment may
resume there, another experiment is refused, so the finished steps of two experiments never mix.
"""

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from interp.errors import InterpError
from interp.io import CONFIG_FILE, _json_default, atomic_write_json

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def exclusive_lock(directory: str | os.PathLike, name: str = ".interp.lock", what: str = "directory") -> Iterator[Path]:
    """Hold ``directory/name`` (created exclusively, holding this process's pid) for the block.

    A second writer gets an InterpError naming the holder's pid and the lock file; a lock whose
    pid no longer runs (a killed run) is stale and taken over. ``directory`` is created if needed
    (and removed again if it is still empty afterwards).
    """
    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    for _ in range(3):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if (holder is not None and _running(holder)) or (
                holder is None and _age(path) < 5
            ):  # a lock being written counts as held
                raise InterpError(
                    f"another interp process (pid {holder}) is writing the {what} {directory} (lock file {path}); "
                    "wait for it to finish, or if that process is gone, delete the lock file."
                ) from None
            logger.warning(
                "interp: the lock file %s was left by process %s, which no longer runs (stopped or killed); "
                "taking it over and going on from what that run finished.",
                path,
                holder if holder is not None else "(unreadable)",
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # stale: its process is gone
            continue
        with os.fdopen(handle, "w") as file:
            file.write(f"{os.getpid()}\n")
        break
    else:
        raise InterpError(
            f"could not take the lock file {path} of {directory}; delete it if no interp process is writing there."
        )
    try:
        yield path
    finally:
        if _lock_holder(path) == os.getpid():
            path.unlink(missing_ok=True)
        if created and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _lock_holder(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None  # unreadable or half-written: treated as stale


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    return True


def claim_directory(out: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Make ``out`` the directory of the experiment ``record`` describes (``config.json``), or check that it is.

    A rerun with the same record may resume there; another record is refused once the directory holds
    any of its experiment's work, so the finished steps of two experiments never mix. A directory that
    holds only ``config.json`` (a run that stopped before doing anything, e.g. its model did not load)
    is taken by the new record. A non-empty directory without ``config.json`` is refused.
    """
    out = Path(out)
    stored = out / CONFIG_FILE
    wanted = json.loads(json.dumps(record, default=_json_default))
    if stored.exists():
        found = _read_record(stored)
        if found != wanted:
            if not _holds_work(out):
                logger.info("interp: %s held only the config of a run that did no work; it is replaced.", stored)
                atomic_write_json(stored, wanted)
                return
            changed = sorted(key for key in set(found) | set(wanted) if found.get(key) != wanted.get(key))
            raise InterpError(
                f"{out} holds a different experiment (changed: {', '.join(changed)}). "
                "Use a new --out directory, or delete this one to start over."
            )
        return
    if out.exists() and any(out.iterdir()):
        raise InterpError(
            f"{out} exists and is not an experiment directory (no {CONFIG_FILE}); choose an empty or new --out."
        )
    atomic_write_json(stored, wanted)


def saved_result(out: str | os.PathLike, record: Mapping[str, Any], load: Callable[[Path], Any]) -> Any | None:
    """The result saved in ``out`` when its ``config.json`` equals ``record`` and it loads; else None.

    The same analysis with other settings is computed again in place (its files are replaced); the
    ``config.json`` is replaced by a placeholder naming the analysis until ``write_record`` marks the
    new result complete. A directory of another analysis, or a non-empty one without a
    ``config.json``, is refused: two analyses never share a directory.
    """
    out = Path(out)
    stored = out / CONFIG_FILE
    wanted = json.loads(json.dumps(record, default=_json_default))
    if not stored.exists():
        if out.exists() and any(out.iterdir()):
            raise InterpError(
                f"{out} exists and is not an experiment directory (no {CONFIG_FILE}); choose an empty or new --out."
            )
        return None
    found = _read_record(stored)
    if found.get("analysis") != wanted.get("analysis") and _holds_work(out):
        raise InterpError(
            f"{out} holds a {found.get('analysis')} experiment; a {wanted.get('analysis')} experiment needs its own "
            "directory: choose a new --out."
        )
    if found == wanted:
        try:
            return load(out)
        except (InterpError, OSError, KeyError, ValueError):
            pass  # an incomplete or unreadable result: computed again
    placeholder = {
        "analysis": wanted.get("analysis"),
        "incomplete": "a result is being computed here; rerun the experiment to finish it",
    }
    atomic_write_json(stored, placeholder)
    return None


def _read_record(stored: Path) -> dict[str, Any]:
    try:
        found = json.loads(stored.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InterpError(
            f"{stored} is not readable JSON ({type(error).__name__}); it is damaged: delete the directory or "
            "choose a new --out."
        ) from error
    if not isinstance(found, dict):
        raise InterpError(f"{stored} is not an experiment's config (a JSON table); choose a new --out.")
    return found


def _holds_work(out: Path) -> bool:
    """Whether ``out`` holds anything but its ``config.json`` and lock files."""
    return any(not (path.name == CONFIG_FILE or path.name.endswith(".lock")) for path in out.iterdir())


def write_record(out: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write ``out/config.json`` (after the result it describes, so that it only ever names a complete one)."""
    atomic_write_json(Path(out) / CONFIG_FILE, record)
