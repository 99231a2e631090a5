"""Prompt sets (JSONL / CSV / TXT), chat templates, tokenization and padded batches.

>>> prompts = PromptSet.from_texts(["How do I bake bread?", "How do I pick a lock?"], labels=["benign", "harmful"])
>>> len(prompts), prompts.labels
(2, ['benign', 'harmful'])

Padding rule used everywhere: batches are **right**-padded with an attention mask, and each
row's own last token is indexed. For causal models that leaves every real position exactly
as it is when the prompt runs alone (left padding would shift rotary positions).
"""

import csv
import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError
from interp.io import atomic_write_jsonl, read_jsonl
from interp.provenance import hash_json

logger = logging.getLogger(__name__)

PROMPT_SUFFIXES = (".jsonl", ".json", ".csv", ".txt")


def _label_kind(label: Any) -> str:
    """What a label is, as far as classes go: ``1`` and ``1.0`` are alike, ``"1"`` and ``true`` are not."""
    if isinstance(label, bool):
        return "a boolean"
    if isinstance(label, (int, float)):
        return "a number"
    if isinstance(label, str):
        return "text"
    return type(label).__name__


@dataclass(frozen=True)
class PromptSet:
    """An ordered, immutable set of prompt records: ``{"text": ..., "label": ..., **metadata}``."""

    records: tuple[Mapping[str, Any], ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.records:
            raise InterpError(
                f"the prompt set{' ' + self.source if self.source else ''} is empty; give at least one prompt."
            )
        for index, record in enumerate(self.records):
            text = record.get("text")
            if not isinstance(text, str) or not text.strip():
                raise InterpError(
                    f"prompt {index}{' in ' + self.source if self.source else ''} has no text "
                    f"(record: {json.dumps(dict(record), ensure_ascii=False)[:120]}). "
                    "Every prompt needs a non-empty 'text'."
                )
        kinds: dict[str, tuple[int, Any]] = {}  # the first prompt with a label of each kind
        for index, record in enumerate(self.records):
            label = record.get("label")
            if label is not None:
                kinds.setdefault(_label_kind(label), (index, label))
        if len(kinds) > 1:
            (first, a), (second, b) = sorted(kinds.values(), key=lambda pair: pair[0])[:2]
            where = f" in {self.source}" if self.source else ""
            raise InterpError(
                f"the labels{where} mix kinds: prompt {first} has {a!r} ({_label_kind(a)}), prompt {second} has "
                f"{b!r} ({_label_kind(b)}), which would count as different classes; write every label alike "
                '(e.g. all "harmful"/"benign", or all 1/0).'
            )

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Sequence[str], labels: Sequence[Any] | None = None, source: str = "") -> "PromptSet":
        if labels is not None and len(labels) != len(texts):
            raise InterpError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text.")
        records = [
            {"text": text} if labels is None else {"text": text, "label": label}
            for text, label in zip(texts, labels or [None] * len(texts))
        ]
        return cls(tuple(records), source)

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        text_field: str = "text",
        label_field: str = "label",
        source: str = "",
    ) -> "PromptSet":
        normalized = []
        for index, record in enumerate(records):
            if text_field not in record:
                fields = (
                    ", ".join(name if name.isprintable() else repr(name) for name in record)[:200] or "none"
                )  # one line
                raise InterpError(
                    f"record {index}{' of ' + source if source else ''} has no field {text_field!r} "
                    f"(fields: {fields}). Pass --text-field with the name of the column that holds the prompt."
                )
            row = {key: value for key, value in record.items() if key not in (text_field, label_field)}
            row["text"] = record[text_field]
            if label_field in record:
                row["label"] = record[label_field]
            normalized.append(row)
        return cls(tuple(normalized), source)

    @classmethod
    def from_file(cls, path: str | Path, text_field: str = "text", label_field: str = "label") -> "PromptSet":
        """Read JSONL (one object per line), a JSON list, CSV (with a header) or TXT (one prompt per line)."""
        return cls.from_records(
            read_records(path, text_field), text_field=text_field, label_field=label_field, source=str(path)
        )

    # ---- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        return self.records[index]

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.records)

    @property
    def texts(self) -> list[str]:
        return [record["text"] for record in self.records]

    @property
    def labels(self) -> list[Any]:
        return [record.get("label") for record in self.records]

    def field(self, name: str) -> list[Any]:
        """The values of one field, with a clear error when some prompts lack it."""
        missing = [i for i, record in enumerate(self.records) if name not in record]
        if missing:
            available = sorted({key for record in self.records for key in record})
            raise InterpError(
                f"{len(missing)} of {len(self)} prompts have no field {name!r} (first: prompt {missing[0]}); "
                f"fields present: {', '.join(available)}."
            )
        return [record[name] for record in self.records]

    @property
    def hash(self) -> str:
        return hash_json([dict(record) for record in self.records])

    def select(self, indices: Sequence[int]) -> "PromptSet":
        return PromptSet(tuple(self.records[i] for i in indices), self.source)

    def with_texts(self, texts: Sequence[str]) -> "PromptSet":
        """The same records with new texts (e.g. after a chat template)."""
        if len(texts) != len(self):
            raise InterpError(f"got {len(texts)} texts for {len(self)} prompts.")
        return PromptSet(tuple({**record, "text": text} for record, text in zip(self.records, texts)), self.source)

    def apply_chat_template(self, tokenizer, system_prompt: str | None = None) -> "PromptSet":
        """Wrap each text as a user turn with the tokenizer's chat template (generation prompt added).

        Raises when the tokenizer has no template: use the prompts as they are instead.
        """
        if not getattr(tokenizer, "chat_template", None):
            raise InterpError(
                "this tokenizer has no chat template; run without --chat-template, or format the prompts yourself."
            )
        texts = []
        for text in self.texts:
            messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": text}
            ]
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return self.with_texts(texts)

    def to_jsonl(self, path: str | Path) -> None:
        atomic_write_jsonl(Path(path), [dict(record) for record in self.records])


def read_records(path: str | Path, text_field: str = "text") -> list[dict[str, Any]]:
    """The records of a JSONL, JSON (a list), CSV (with a header) or TXT file (one record ``{text_field: line}`` per
    line).

    Lines end at "\\n" only (U+2028 is text) and quoted CSV fields may hold line breaks; a missing,
    unreadable, empty or unknown-type file is an InterpError saying what to give instead.
    """
    path = Path(path)
    if not path.exists():
        raise InterpError(f"prompt file {path} does not exist.")
    if path.is_dir():
        raise InterpError(f"{path} is a directory; pass a .jsonl, .csv or .txt prompt file.")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InterpError(f"cannot read prompt file {path}: {error}. Save it as UTF-8 text.") from error
    if not raw.strip():
        raise InterpError(
            f"prompt file {path} is empty; put one prompt per line (TXT) or one JSON object per line (JSONL)."
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = read_jsonl(raw.encode("utf-8"), what=str(path), hint="each line must be one JSON object")
    elif suffix == ".json":
        records = _parse_json(raw, path)
    elif suffix == ".csv":
        records = _parse_csv(raw, path)
    elif suffix == ".txt":
        records = [
            {text_field: line.removesuffix("\r")} for line in raw.split("\n") if line.strip()
        ]  # "\n" only: U+2028 is text
    else:
        raise InterpError(
            f"unknown prompt file type {path.suffix!r} for {path}; use one of {', '.join(PROMPT_SUFFIXES)}."
        )
    if suffix in (".jsonl", ".json"):
        _check_no_lone_surrogates(records, path)
    return records


def _check_no_lone_surrogates(records: list[dict[str, Any]], path: Path) -> None:
    """JSON may spell a lone surrogate (``"\\ud800"``); it is no character, and the prompts could not be hashed or
    saved."""
    try:
        json.dumps(records, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise InterpError(
            f"{path} holds a lone surrogate escape ({error.object[error.start]!r}), which is not a character; "
            "remove it or write the character itself."
        ) from None


def _parse_json(raw: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InterpError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}).") from error
    except RecursionError:
        raise InterpError(
            f'{path}: the JSON is nested too deeply to read; give a flat list of objects like [{{"text": ...}}].'
        ) from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise InterpError(f'{path}: expected a JSON list of objects like [{{"text": ...}}].')
    return data


def _parse_csv(raw: str, path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV file with a header, as dicts; a row with more fields than the header is an InterpError.

    Quoted fields may hold line breaks, and a field may be as long as the file (Python's csv module
    refuses fields over 131,072 characters unless its limit is raised).
    """
    if csv.field_size_limit() < len(raw):
        csv.field_size_limit(len(raw))
    # restkey may be any hashable (typeshed asks for a str): a fresh object cannot collide with a column name
    reader = csv.DictReader(io.StringIO(raw, newline=""), restkey=_EXTRA_FIELDS)  # type: ignore[call-overload]
    records = []
    try:
        for row in reader:
            if _EXTRA_FIELDS in row:
                raise InterpError(
                    f"{path}, line {reader.line_num}: {len(reader.fieldnames) + len(row[_EXTRA_FIELDS])} fields "
                    f"but the header has {len(reader.fieldnames)}; "
                    'quote a field that holds a comma ("a, b") or add the column to the header.'
                )
            records.append(row)
    except csv.Error as error:
        raise InterpError(
            f"{path}, line {reader.line_num}: not valid CSV ({error}); "
            "quote fields that hold commas, quotes or line breaks."
        ) from None
    return records


_EXTRA_FIELDS = (
    object()
)  # the key under which DictReader puts a row's fields beyond the header's (no column name can equal it)


# ---- tokenization and batching -------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids of some prompts, with their mask, true lengths and prompt indices."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    indices: tuple[int, ...] = field(default=())

    @property
    def last_positions(self) -> Int[Tensor, " batch"]:
        return self.lengths - 1


def tokenize_prompts(
    model, prompts: PromptSet | Sequence[str], max_length: int | None = None
) -> list[Int[Tensor, " pos"]]:
    """Token ids of each prompt as the model itself would tokenize it alone (BOS rules included).

    Raises if a prompt is longer than the model's context (nothing is silently truncated).
    """
    texts = prompts.texts if isinstance(prompts, PromptSet) else list(prompts)
    limit = max_length or int(model.cfg.n_ctx)
    bos = getattr(model.tokenizer, "bos_token", None)
    token_lists = []
    for index, text in enumerate(texts):
        # A chat template usually writes the BOS itself; do not add a second one.
        prepend_bos = False if bos and text.startswith(bos) else None
        ids = model.to_tokens(text, prepend_bos=prepend_bos, truncate=False, move_to_device=False)[0]
        if ids.numel() == 0:
            raise InterpError(f"prompt {index} tokenizes to nothing; remove it or give it some text.")
        if ids.numel() > limit:
            raise InterpError(
                f"prompt {index} is {ids.numel()} tokens long but the model's context is {limit} tokens "
                f"({text[:60]!r}...). Shorten it or remove it from the prompt file."
            )
        token_lists.append(ids)
    return token_lists


def pad_batch(
    token_lists: Sequence[Tensor], pad_id: int, indices: Sequence[int] = (), pad_to: int | None = None
) -> Batch:
    """Right-pad a list of 1-D token tensors into a Batch."""
    lengths = torch.tensor([len(ids) for ids in token_lists], dtype=torch.long)
    width = int(pad_to or lengths.max())
    tokens = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, ids in enumerate(token_lists):
        tokens[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return Batch(tokens, mask, lengths, tuple(indices) or tuple(range(len(token_lists))))


def iter_batches(
    token_lists: Sequence[Tensor], batch_size: int, pad_id: int, start: int = 0, stop: int | None = None
) -> Iterator[Batch]:
    """Consecutive right-padded batches over prompts ``start:stop``."""
    if batch_size < 1:
        raise InterpError(f"batch_size must be at least 1, got {batch_size}.")
    stop = len(token_lists) if stop is None else stop
    for begin in range(start, stop, batch_size):
        end = min(begin + batch_size, stop)
        yield pad_batch(token_lists[begin:end], pad_id, indices=range(begin, end))


def pad_token_id(model) -> int:
    tokenizer = model.tokenizer
    for candidate in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0


def token_chunks(model, prompts: PromptSet, length: int) -> tuple[PromptSet, list[Int[Tensor, " pos"]]]:
    """Each prompt's text cut into pieces of ``length`` tokens (the model's BOS, if it adds one, included):
    a corpus of long documents as prompts, e.g. to train a sparse dictionary on every position.

    The token ids are cut, not the text, so every piece is exactly what the model reads; a piece's record
    holds its decoded text and the index of the prompt it came from (``"document"``).
    """
    tokenizer = model.tokenizer
    if not isinstance(length, int) or isinstance(length, bool) or not 2 <= length <= int(model.cfg.n_ctx):
        raise InterpError(
            f"chunk_tokens must be an integer in 2..{int(model.cfg.n_ctx)} (the context), not {length!r}."
        )
    bos = getattr(tokenizer, "bos_token_id", None)
    prepend = bos is not None and bool(getattr(model.cfg, "default_prepend_bos", True))
    step = length - 1 if prepend else length
    records: list[dict[str, Any]] = []
    token_lists = []
    for document, text in enumerate(prompts.texts):
        ids = tokenizer.encode(text, add_special_tokens=False)
        for start in range(0, len(ids), step):
            piece = ids[start : start + step]
            token_lists.append(torch.tensor(([bos] if prepend else []) + list(piece), dtype=torch.long))
            records.append({"text": tokenizer.decode(piece), "document": document})
    if not records:
        raise InterpError("the prompts hold no tokens to cut into chunks.")
    return PromptSet(tuple(records), source=prompts.source), token_lists


def within_budget(
    prompts: PromptSet, token_lists: list[Int[Tensor, " pos"]], max_tokens: int
) -> tuple[PromptSet, list[Int[Tensor, " pos"]]]:
    """The first prompts whose tokens reach ``max_tokens`` (all of them if they hold fewer)."""
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InterpError(f"max_tokens must be an integer >= 1, got {max_tokens!r}.")
    total = 0
    for index, ids in enumerate(token_lists):
        total += len(ids)
        if total >= max_tokens:
            return PromptSet(prompts.records[: index + 1], source=prompts.source), token_lists[: index + 1]
    logger.info(
        "interp: the prompts hold %d tokens, fewer than max_tokens = %d; all of them are used.", total, max_tokens
    )
    return prompts, token_lists
