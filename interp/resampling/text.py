"""Sentence splitting and answer grading for chain-of-thought resampling.

The splitting rules are the Thought Anchors reference rules, so that chunk indices line up
with the published data: the reasoning is the text between ``<think>`` and ``</think>``; a
sentence ends after ``.``, ``?`` or ``!`` followed by a space or newline, and at a blank line;
pieces shorter than 10 characters are merged into the next piece (the last one into the
previous piece), joined by one space.

>>> split_sentences("<think>Let x be 2. Then x + 1 = 3.\\n\\nSo it is 3!</think> The answer is 3.")
['Let x be 2.', 'Then x + 1 = 3.', 'So it is 3!']
>>> extract_boxed("so \\\\boxed{\\\\frac{1}{2}} done")
'\\\\frac{1}{2}'
>>> answers_match("\\\\dfrac{1}{2}", "0.5")
True
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from interp.errors import InterpError

MIN_SENTENCE_CHARS = 10
_SENTENCE_END = (".", "?", "!")
_PARAGRAPH_END = ("\n\n", "\r\n\r\n")


class Sentence(NamedTuple):
    """One chunk of a chain: its text (as the reference writes it) and where it lies.

    ``start``/``end`` are character offsets into the text given to :func:`sentence_spans`;
    ``text`` equals ``source[start:end]`` except where short pieces were merged (then the
    pieces are joined by one space, as the reference does).
    """

    text: str
    start: int
    end: int


def reasoning_bounds(text: str) -> tuple[int, int]:
    """Offsets ``(start, end)`` of the reasoning inside ``text``, whitespace-stripped.

    The reasoning is what lies after the first ``<think>`` (up to a second ``<think>``, if
    any) and before the first ``</think>``; without tags it is the whole text.

    >>> t = "Q? <think>\\n a b </think> c"
    >>> s, e = reasoning_bounds(t); t[s:e]
    'a b'
    """
    start, end = 0, len(text)
    if "<think>" in text:
        start = text.index("<think>") + len("<think>")
        second = text.find("<think>", start)
        if second != -1:
            end = second
    close = text.find("</think>", start, end)
    if close != -1:
        end = close
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def sentence_spans(text: str) -> list[Sentence]:
    """Split ``text`` into sentences with their character offsets in ``text``.

    >>> [(s.text, s.start) for s in sentence_spans("<think>Hello there. I am here now.</think>")]
    [('Hello there.', 7), ('I am here now.', 20)]
    """
    lo, hi = reasoning_bounds(text)
    pieces: list[Sentence] = []
    begin = lo  # where the current (unemitted) piece began
    i = lo
    while i < hi:
        paragraph_end = any(text.startswith(p, i) and i + len(p) <= hi for p in _PARAGRAPH_END)
        sentence_end = i < hi - 1 and text[i] in _SENTENCE_END and text[i + 1] in (" ", "\n")
        if paragraph_end or sentence_end:
            raw = text[begin : i + 1]
            if raw.strip():
                pieces.append(_strip_piece(text, begin, i + 1))
                begin = i + 1
        i += 1
    if text[begin:hi].strip():
        pieces.append(_strip_piece(text, begin, hi))
    return _merge_short(pieces)


def split_sentences(text: str) -> list[str]:
    """The sentences of the reasoning in ``text`` (reference Thought Anchors rules).

    Args:
        text: a chain of thought; if it holds ``<think>`` / ``</think>`` only the reasoning
            between them is split.

    >>> split_sentences("First, add 2 and 3. That gives 5.\\n\\nDone")
    ['First, add 2 and 3.', 'That gives 5. Done']
    """
    return [s.text for s in sentence_spans(text)]


def _strip_piece(text: str, begin: int, end: int) -> Sentence:
    raw = text[begin:end]
    left = len(raw) - len(raw.lstrip())
    right = len(raw.rstrip())
    return Sentence(raw.strip(), begin + left, begin + right)


def _merge_short(chunks: list[Sentence]) -> list[Sentence]:
    # Same loop as the reference, including its corner cases.
    chunks = list(chunks)
    i = 0
    while i < len(chunks):
        if len(chunks[i].text) < MIN_SENTENCE_CHARS:
            if i == len(chunks) - 1:
                if i > 0:
                    prev, cur = chunks[i - 1], chunks[i]
                    chunks[i - 1] = Sentence(prev.text + " " + cur.text, prev.start, cur.end)
                    chunks.pop(i)
            else:
                cur, nxt = chunks[i], chunks[i + 1]
                chunks[i + 1] = Sentence(cur.text + " " + nxt.text, cur.start, nxt.end)
                chunks.pop(i)
            if i == 0 and len(chunks) == 1:
                break
        else:
            i += 1
    return chunks


# --------------------------------------------------------------------------- answers


def extract_boxed_answers(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` in ``text``, braces matched; empty boxes skipped.

    >>> extract_boxed_answers("\\\\boxed{a{b}c} and \\\\boxed{} and \\\\boxed{7")
    ['a{b}c', '7']
    """
    answers = []
    for match in re.finditer(r"\\boxed\{", text):
        depth, idx, out = 1, match.end(), []
        while idx < len(text):
            ch = text[idx]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    break
            out.append(ch)
            idx += 1
        if out:
            answers.append("".join(out))
    return answers


def extract_boxed(text: str) -> str | None:
    """The first ``\\boxed{}`` answer in ``text`` (as the reference takes it), or None.

    >>> extract_boxed("no box here") is None
    True
    """
    answers = extract_boxed_answers(text)
    return answers[0] if answers else None


def normalize_answer(answer: str) -> str:
    """The reference LaTeX normalisation used to compare and to bin answers.

    >>> normalize_answer(" \\\\dfrac{1}{2} ")
    '\\\\frac12'
    """
    s = answer.strip().lower()
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\s+", "", s)
    s = s.replace("\\%", "")
    s = s.replace("{,}", "")
    s = s.replace("\\times", "*").replace("\\cdot", "*")
    s = re.sub(r"(\d+)[\.,](\d+)", r"\1.\2", s)
    s = re.sub(r"{([^{}]+)}", r"\1", s)
    s = s.replace("\\pi", "pi")
    s = re.sub(r"\\text\{([^{}]+)\}", r"\1", s)
    s = re.sub(r"\\mathrm\{([^{}]+)\}", r"\1", s)
    s = re.sub(r"([a-z]+)\\+\s*(\d+)", r"\1\2", s)
    s = s.replace("\\text", "")
    return s


def _as_number(answer: str) -> Fraction | None:
    s = answer.strip().replace("$", "").replace("\\!", "").replace("\\%", "").replace("%", "")
    s = s.replace("\\left", "").replace("\\right", "").replace(" ", "")
    s = re.sub(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", r"(\1)/(\2)", s)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    m = re.fullmatch(r"\(?(-?\d+(?:\.\d+)?)\)?(?:/\(?(-?\d+(?:\.\d+)?)\)?)?", s)
    if not m:
        return None
    try:
        value = Fraction(m.group(1))
        if m.group(2) is not None:
            value = value / Fraction(m.group(2))
    except (ValueError, ZeroDivisionError):
        return None
    return value


def answers_match(answer: str, gt_answer: str) -> bool:
    """Whether two answers agree: equal after :func:`normalize_answer`, or equal as numbers.

    >>> answers_match("6.17", "6.17\\\\%"), answers_match("12", "13")
    (True, False)
    """
    if normalize_answer(answer) == normalize_answer(gt_answer):
        return True
    a, b = _as_number(answer), _as_number(gt_answer)
    return a is not None and b is not None and a == b


Extractor = Callable[[str], str | None]
ExtractorSpec = str | Extractor | None


@dataclass(frozen=True)
class RegexExtractor:
    """Answer = group 1 (or the whole match) of the first match of ``pattern``.

    >>> RegexExtractor(r"answer is (\\d+)")("so the answer is 42.")
    '42'
    """

    pattern: str

    def __post_init__(self):
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise InterpError(
                f"answer regex {self.pattern!r} does not compile ({e}); pass a valid Python "
                "regular expression, e.g. r'answer is (\\d+)'"
            ) from e

    def __call__(self, text: str) -> str | None:
        m = re.search(self.pattern, text)
        if m is None:
            return None
        value = m.group(1) if m.groups() else m.group(0)
        return value if value else None


def make_extractor(spec: ExtractorSpec = None) -> Extractor:
    """An answer extractor from a spec: None or ``"boxed"`` -> first ``\\boxed{}``; another
    string -> a regex (:class:`RegexExtractor`); a callable ``text -> str | None`` as is.

    >>> make_extractor()("\\\\boxed{5}"), make_extractor(r"= (\\d+)")("2+3 = 5")
    ('5', '5')
    """
    if spec is None or spec == "boxed":
        return extract_boxed
    if isinstance(spec, str):
        return RegexExtractor(spec)
    if callable(spec):
        return spec
    raise InterpError(
        f"answer extractor must be None, 'boxed', a regex string or a callable, got "
        f"{type(spec).__name__}; pass e.g. answer='boxed' or answer=r'answer is (\\d+)'"
    )


class Grade(NamedTuple):
    """What a rollout answered; ``is_correct`` is None when no answer (or no ground truth)."""

    answer: str | None
    is_correct: bool | None


def grade(text: str, extractor: Extractor, gt_answer: str | None) -> Grade:
    """Extract the answer from ``text`` and compare it with ``gt_answer``.

    An extractor that finds nothing (returns None or "") or raises on odd text gives
    ``Grade(None, None)``: the rollout is counted as unanswered, not an error.

    >>> grade("so \\\\boxed{4}", extract_boxed, "4"), grade("none", extract_boxed, "4")
    (Grade(answer='4', is_correct=True), Grade(answer=None, is_correct=None))
    """
    try:
        answer = extractor(text)
    except Exception:  # a user extractor failing on odd text counts as "no answer"
        answer = None
    if answer is None or str(answer).strip() == "" or str(answer) == "None":
        return Grade(None, None)
    answer = str(answer)
    if gt_answer is None:
        return Grade(answer, None)
    return Grade(answer, answers_match(answer, gt_answer))
