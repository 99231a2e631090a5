"""The one table of what numeric settings may be, checked where input enters: command-line flags and TOML keys.

``check_numbers({"batch_size": 0})`` raises ``InterpError("batch_size must be an integer >= 1, got 0.")``;
a flag's message names it as ``--batch-size``. Every float must be finite (no NaN or inf); names
not in the table are only checked for that. ``None`` means "the default" and passes.
Output paths are checked the same way before any work (``check_output_path``), and an OSError of the
file system becomes one line naming the path and the fix (``filesystem_error``).

>>> check_numbers({"batch_size": 8, "C": 1.0, "label": "x"})
"""

import errno
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from interp.errors import InterpError

# name -> (kind, lowest, highest, whether the lowest itself is allowed); kind "int" or "float"
LIMITS: dict[str, tuple[str, float | None, float | None, bool]] = {
    **{
        name: ("int", 1, None, True)
        for name in (
            "batch_size",
            "shard_size",
            "steps",
            "n",
            "n_samples",
            "max_new_tokens",
            "task_max_new_tokens",
            "forced_max_new_tokens",
            "new_tokens",
            "top_k",
            "top",
            "threads",
            "max_iter",
            "batch_tokens",
            "generate_batch_size",
            "tensor_parallel_size",
            "limit",
            "n_train",
            "n_val",
            "report_n_min",
        )
    },
    **{name: ("int", 0, None, True) for name in ("seed", "report_n")},
    "cv": ("int", 2, None, True),
    "C": ("float", 0, None, False),
    "lr": ("float", 0, None, False),
    "minutes": ("float", 0, None, False),
    "temperature": ("float", 0, None, True),
    "ridge": ("float", 0, None, True),
    "top_p": ("float", 0, 1, False),
    "holdout": ("float", 0, 1, True),
    "heldout_fraction": ("float", 0, 1, True),
}


def check_number(name: str, value: Any, flag: bool = False, where: str = "") -> None:
    """Raise naming ``name`` (as ``--flag-name`` when ``flag``) if ``value`` breaks its rule in ``LIMITS``."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    shown = f"--{name.replace('_', '-')}" if flag else f"{name!r}{where}"
    if isinstance(value, float) and not math.isfinite(value):
        raise InterpError(f"{shown} must be a finite number, got {value}.")
    if name not in LIMITS:
        return
    kind, low, high, low_allowed = LIMITS[name]
    if kind == "int" and not isinstance(value, int):
        raise InterpError(f"{shown} must be a whole number, got {value!r}.")
    too_low = low is not None and (value < low or (value == low and not low_allowed))
    too_high = high is not None and (value > high or (value == high and name in ("holdout", "heldout_fraction")))
    if too_low or too_high:
        if high is None:
            rule = f">= {low}" if low_allowed else f"> {low}"
        else:
            opening = "[" if low_allowed else "("
            closing = ")" if name in ("holdout", "heldout_fraction") else "]"
            rule = f"in {opening}{low}, {high}{closing}"
        raise InterpError(f"{shown} must be {'an integer' if kind == 'int' else 'a number'} {rule}, got {value!r}.")


def check_numbers(values: Mapping[str, Any], flag: bool = False, where: str = "") -> None:
    """``check_number`` for every entry of ``values`` (a parsed namespace's ``vars``, or a TOML table)."""
    for name, value in values.items():
        check_number(name, value, flag=flag, where=where)


# ---- filesystem: output paths, and OSErrors as one line ---------------------------------------------

# errno -> what to do about it
FILESYSTEM_FIXES = {
    errno.ENOSPC: "the disk is full: free some space, or write to another disk (another --out)",
    errno.EDQUOT: "the disk quota is used up: free some space, or write to another disk (another --out)",
    errno.EACCES: "no permission: make it writable (chmod u+w; readable for an input: u+r), or choose another --out",
    errno.EPERM: "no permission: make it writable (chmod u+w; readable for an input: u+r), or choose another --out",
    errno.EROFS: "the file system is read-only: choose an --out on a writable disk",
    errno.EISDIR: "a directory is in the way: give a file path, or remove that directory",
    errno.ENOTDIR: "a file is in the way where a directory is needed: remove it or choose another --out",
    errno.EEXIST: "a file is in the way where a directory is needed: remove it or choose another --out",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOENT: "check the path: the file, or a directory on the way, does not exist",
}


def filesystem_error(error: OSError, path: str | os.PathLike | None = None, action: str = "write") -> InterpError:
    """``error`` as a one-line InterpError naming ``path`` (default: the error's file) and what to do.

    >>> message = str(filesystem_error(OSError(errno.ENOSPC, "No space left on device"), "out/x.json"))
    >>> for part in message.split("; "):
    ...     print(part)
    cannot write out/x.json: No space left on device
    the disk is full: free some space, or write to another disk (another --out).
    """
    where = str(path) if path is not None else str(error.filename or "a file")
    involved = [str(name) for name in (error.filename, error.filename2) if name]
    other = [
        name for name in involved if name != where and not os.path.basename(name).endswith(".tmp")
    ]  # temp files say nothing
    reason = (error.strerror or str(error) or type(error).__name__).rstrip(".")
    also = f" ({other[0]})" if other else ""
    return InterpError(
        f"cannot {action} {where}{also}: {reason}; "
        f"{FILESYSTEM_FIXES.get(error.errno or 0, 'check the path and the disk, then run again')}."
    )


MAX_NAME_BYTES = 255  # one file or directory name (Linux, macOS and Windows file systems alike)
MAX_PATH_BYTES = 4095  # a whole path (Linux's PATH_MAX less its terminating byte)


STORE_MANIFEST_FORMAT = "interp.activation_store"  # the "format" of a store's manifest.json (interp.store)


def _enclosing_store(path: Path) -> Path | None:
    """The activation store that ``path`` is, or lies inside (up to its ``shards/``), if any."""
    for candidate in (path, *path.parents[:2]):
        manifest = candidate / "manifest.json"
        try:
            readable = manifest.is_file() and manifest.stat().st_size < 1 << 26
            if readable and json.loads(manifest.read_text(encoding="utf-8")).get("format") == STORE_MANIFEST_FORMAT:
                return candidate
        except (OSError, ValueError, AttributeError, RecursionError):
            continue  # not a readable store manifest: not a store
    return None


def check_output_path(path: str | os.PathLike | None, flag: str = "--out", kind: str = "directory") -> None:
    """Raise before any work if ``path`` cannot become the output ``kind`` (``"directory"`` or ``"file"``).

    Refused: an existing file where a directory is wanted (or the reverse), a file on the way up,
    and a nearest existing directory that this process cannot write into.
    """
    if path is None:
        return
    path = Path(path)
    too_long = [part for part in path.parts if len(os.fsencode(part)) > MAX_NAME_BYTES]
    if too_long:
        raise InterpError(
            f"{flag}: the name {too_long[0][:24]}... is {len(os.fsencode(too_long[0]))} bytes long, longer than a file "
            f"name may be ({MAX_NAME_BYTES}); choose a shorter {flag}."
        )
    if len(os.fsencode(str(path.absolute()))) > MAX_PATH_BYTES:
        raise InterpError(
            f"{flag} is a path longer than the system allows ({MAX_PATH_BYTES} bytes); choose a shorter one."
        )
    store = _enclosing_store(path) if kind != "store" else None
    kind = "directory" if kind == "store" else kind  # a store is a directory; its own writer may reopen it
    if store is not None:
        raise InterpError(
            f"{flag} {path} lies inside the activation store {store}, whose files it would mix with; "
            f"choose a directory outside it."
        )
    if kind == "directory" and path.exists() and not path.is_dir():
        raise InterpError(
            f"{flag} {path} is a file, not a directory; choose a directory path (new or existing), or remove that file."
        )
    if kind == "file" and path.is_dir():
        raise InterpError(f"{flag} {path} is a directory; {flag} names the file to write, e.g. {path / 'report.json'}.")
    existing = path if kind == "directory" and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise InterpError(
            f"{flag} {path} cannot be created: {existing} is a file, not a directory; "
            f"remove it or choose another {flag}."
        )
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise InterpError(
            f"{flag} {path} cannot be written: no permission to write in {existing}; "
            f"make it writable (chmod u+w) or choose another {flag}."
        )
