"""The one table of what numeric settings may be, checked where input enters: command-line flags and TOML keys.

``check_numbers({"batch_size": 0})`` raises ``InterpError("batch_size must be an integer >= 1, got 0.")``;
a flag's message names it as ``--batch-size``. Every float must be finite (no NaN or inf); names
not in the table are only checked for that. ``None`` means "the default" and passes.

>>> check_numbers({"batch_size": 8, "C": 1.0, "label": "x"})
"""

import math
from typing import Any, Mapping

from interp.errors import InterpError

# name -> (kind, lowest, highest, whether the lowest itself is allowed); kind "int" or "float"
LIMITS: dict[str, tuple[str, float | None, float | None, bool]] = {
    **{name: ("int", 1, None, True) for name in (
        "batch_size", "shard_size", "steps", "n", "n_samples", "max_new_tokens", "task_max_new_tokens", "forced_max_new_tokens",
        "new_tokens", "top_k", "top", "threads", "max_iter", "batch_tokens", "generate_batch_size", "tensor_parallel_size", "limit",
        "n_train", "n_val", "report_n_min")},  # fmt: skip
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
            rule = f"in {'[' if low_allowed else '('}{low}, {high}{')' if name in ('holdout', 'heldout_fraction') else ']'}"
        raise InterpError(f"{shown} must be {'an integer' if kind == 'int' else 'a number'} {rule}, got {value!r}.")


def check_numbers(values: Mapping[str, Any], flag: bool = False, where: str = "") -> None:
    """``check_number`` for every entry of ``values`` (a parsed namespace's ``vars``, or a TOML table)."""
    for name, value in values.items():
        check_number(name, value, flag=flag, where=where)
