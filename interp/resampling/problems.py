"""Problem files (``interp resample --problem FILE``): read and checked once, at the boundary.

A problem file is a JSON object::

    {"prompt": "... <think>\\n", "solution": "...", "gt_answer": "42", "answer_regex": "answer is (\\\\d+)"}

``solution``, ``gt_answer`` and ``answer_regex`` are optional; a Thought Anchors problem file
(``{"problem": ..., "gt_answer": ...}``) gets the Thought Anchors prompt around its problem.
Whatever is wrong with the file is one InterpError naming the file, the field and the fix.
"""

import json
import re
from pathlib import Path
from typing import Any

from interp.errors import InterpError

# The Thought Anchors prompt, for problem files that give only {"problem": ..., "gt_answer": ...}.
MATH_TEMPLATE = (
    "Solve this math problem step by step. You MUST put your final answer in \\boxed{{}}. "
    "Problem: {problem} Solution: \n<think>\n"
)

PROBLEM_HELP = (
    "JSON file: {\"prompt\": text the chain continues (e.g. ending in '<think>\\n'), "
    '"solution": the base chain of thought (optional: the model writes one if absent), '
    '"gt_answer": the correct answer (optional), "answer_regex": regex with one group '
    "(optional; default: the first \\boxed{})}. A Thought Anchors problem.json "
    '({"problem", "gt_answer"}) also works.'
)


def load_problem(path: str | Path) -> dict[str, Any]:
    """Read a problem file into ``{"prompt", "solution", "gt_answer", "answer_regex"}`` (checked types).

    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "problem.json"
    >>> _ = file.write_text('{"problem": "1 + 1?", "gt_answer": 2}')
    >>> load_problem(file)["gt_answer"]
    '2'
    """
    path = Path(path)
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "does not exist"
        raise InterpError(f"problem file {path} {state}; pass --problem FILE (a JSON file: {PROBLEM_HELP})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InterpError(
            f"problem file {path} is not UTF-8 text ({error.reason} at byte {error.start}); "
            f"save it as UTF-8. {PROBLEM_HELP}"
        ) from None
    except json.JSONDecodeError as error:
        raise InterpError(
            f"problem file {path} is not JSON ({error.msg} at line {error.lineno}); {PROBLEM_HELP}"
        ) from None
    except RecursionError:
        raise InterpError(f"problem file {path} is nested too deeply to read; {PROBLEM_HELP}") from None
    return problem_from_record(data, f"problem file {path}")


def problem_from_record(data: Any, where: str) -> dict[str, Any]:
    """One problem (a problem file's object, or a line of a ``--problems`` JSONL file) as
    ``{"prompt", "solution", "gt_answer", "answer_regex"}``, its types checked; ``where`` names it in errors.

    >>> problem_from_record({"prompt": "Q: 1 + 1? <think>\\n", "gt_answer": 2}, "problem 1")["gt_answer"]
    '2'
    """
    if not isinstance(data, dict):
        raise InterpError(f"{where} must hold a JSON object, not a {type(data).__name__}; {PROBLEM_HELP}")
    if "prompt" not in data:
        if "problem" not in data:
            raise InterpError(f"{where} has neither 'prompt' nor 'problem'; {PROBLEM_HELP}")
        _check_text(where, data, "problem", optional=False)
        data = {**data, "prompt": MATH_TEMPLATE.format(problem=data["problem"])}
    _check_text(where, data, "prompt", optional=False)
    _check_text(where, data, "solution", optional=True)
    _check_text(where, data, "answer_regex", optional=True)
    gt_answer = data.get("gt_answer")
    if gt_answer is not None and (isinstance(gt_answer, bool) or not isinstance(gt_answer, (str, int, float))):
        raise InterpError(
            f"{where}: 'gt_answer' is {type(gt_answer).__name__} {gt_answer!r:.60}; "
            'give a string or a number, e.g. "gt_answer": "42".'
        )
    if data.get("answer_regex") is not None:
        try:
            re.compile(data["answer_regex"])
        except (re.error, RecursionError, OverflowError) as error:
            raise InterpError(
                f"{where}: 'answer_regex' {data['answer_regex']!r:.60} does not compile ({error}); "
                'give a Python regex with one group, e.g. "answer is (\\\\d+)".'
            ) from None
    return {
        "prompt": data["prompt"],
        "solution": data.get("solution"),
        "gt_answer": None if gt_answer is None else str(gt_answer),
        "answer_regex": data.get("answer_regex"),
    }


def _check_text(where: str, data: dict[str, Any], key: str, optional: bool) -> None:
    """``data[key]`` is a string of UTF-8 characters (or absent / null when ``optional``)."""
    value = data.get(key)
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InterpError(f"{where}: {key!r} is {type(value).__name__} {value!r:.60}, not a string; {PROBLEM_HELP}")
    if not _is_utf8(value):
        raise InterpError(
            f"{where}: {key!r} holds a lone surrogate escape (\\ud800-\\udfff), which is not a character; remove it."
        )


def _is_utf8(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (``"\\ud800"`` in JSON), which no file can store as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
