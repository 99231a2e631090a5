"""Instruction sets for the refusal direction: harmful behaviours (AdvBench CSV/TXT) and benign requests.

Both are wrapped in the model's chat template with the generation prompt, so the last token of a
formatted prompt is where the assistant's answer starts (``h_last``). The *post-instruction*
positions are the template's tokens after the user's text (for SmolLM2:
``<|im_end|> \\n <|im_start|> ass istant \\n``), counted from the end: ``-k .. -1``.

>>> harmful = read_instructions("advbench.csv", label="harmful")            # doctest: +SKIP
>>> train, heldout = split_instructions(harmful)                            # doctest: +SKIP
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from interp.data import PromptSet, read_records
from interp.errors import InterpError

TEXT_COLUMNS = ("goal", "prompt", "behavior", "instruction", "text")  # tried in order when no column is named
SPLIT_FIELD, TRAIN, HELDOUT = "split", "train", "heldout"
PLACEHOLDER = "\u2063INSTRUCTION\u2063"  # stands for the user's text when the template is split


def read_instructions(path: str | Path, label: str, column: str | None = None) -> PromptSet:
    """Read instructions from a CSV (a header; AdvBench's ``harmful_behaviors.csv`` has ``goal``), JSONL or TXT file.

    Every record gets ``label``; a ``split`` field is kept when present. ``column`` names the
    field holding the instruction (default: the first of goal, prompt, behavior, instruction, text).

    >>> import tempfile, pathlib; path = pathlib.Path(tempfile.mkdtemp()) / "h.csv"
    >>> _ = path.write_text("goal,target\\nDo X,Sure\\n")
    >>> read_instructions(path, label="harmful").texts
    ['Do X']
    """
    path = Path(path)
    if not path.is_file():
        raise InterpError(
            f"instruction file {path} does not exist; pass a CSV (with a header), JSONL or TXT file of instructions."
        )
    if path.suffix.lower() not in (".csv", ".jsonl", ".txt"):
        raise InterpError(
            f"unknown instruction file type {path.suffix!r} for {path}; use .csv (with a header), .jsonl or .txt."
        )
    return instructions_from_records(read_records(path, text_field="prompt"), label, column, source=str(path))


def instructions_from_records(records: Sequence[Mapping[str, Any]], label: str, column: str | None = None,
                              source: str = "", splits: Sequence[str] | None = None) -> PromptSet:  # fmt: skip
    """Instructions from records (a file's rows, a data loader's dicts): the text of ``column`` (default: the
    first of goal, prompt, behavior, instruction, text present), ``label``, and the ``split`` field where
    present (only the values in ``splits``, when given).
    """
    if not records:
        raise InterpError(
            f"{source} holds no instructions; give one per line (TXT), per row (CSV) or per object (JSONL)."
        )
    fields = list(dict.fromkeys(key for record in records if isinstance(record, Mapping) for key in record))
    wanted = column or next((name for name in TEXT_COLUMNS if name in fields), None)
    if wanted is None or wanted not in fields:
        expected = repr(column) if column else "one of " + ", ".join(TEXT_COLUMNS)
        raise InterpError(f"{source} has no column {expected} (columns: {', '.join(map(str, fields)) or 'none'}); "
                          "name the instruction column with column= "
                          "(--harmful-column / --benign-column).")  # fmt: skip
    rows = []
    for number, record in enumerate(records):
        text = record.get(wanted) if isinstance(record, Mapping) else None
        if not isinstance(text, str) or not text.strip():
            raise InterpError(
                f"{source}, record {number} has no text in column {wanted!r}; fill it in or remove the record."
            )
        row = {"text": text.strip(), "label": label}
        if SPLIT_FIELD in record and (splits is None or record[SPLIT_FIELD] in splits):
            row[SPLIT_FIELD] = str(record[SPLIT_FIELD])
        rows.append(row)
    return PromptSet(tuple(rows), source)


def split_instructions(prompts: PromptSet, heldout_fraction: float = 0.25) -> tuple[PromptSet, PromptSet]:
    """(train, held-out): by the records' ``split`` field (``train`` / ``heldout``), else every k-th record held out."""
    splits = [record.get(SPLIT_FIELD) for record in prompts]
    if all(split is not None for split in splits):
        unknown = sorted({split for split in splits if split is not None and split not in (TRAIN, HELDOUT)})
        if unknown:
            raise InterpError(f"split values {unknown} in {prompts.source or 'the prompts'}; use 'train' or 'heldout'.")
        train = [i for i, split in enumerate(splits) if split == TRAIN]
        held = [i for i, split in enumerate(splits) if split == HELDOUT]
    else:
        step = max(2, round(1 / heldout_fraction))
        held = [i for i in range(len(prompts)) if i % step == step - 1]
        train = [i for i in range(len(prompts)) if i % step != step - 1]
    if not train or not held:
        raise InterpError(
            f"{prompts.source or 'the prompts'}: the split leaves {len(train)} train and {len(held)} held-out "
            "prompts; both must be non-empty."
        )
    return prompts.select(train), prompts.select(held)


def chat_format(tokenizer, prompts: PromptSet | Sequence[str]) -> PromptSet:
    """The prompts as user turns of the tokenizer's chat template, with the generation prompt (``h_last`` = where the
    answer starts)."""
    prompt_set = prompts if isinstance(prompts, PromptSet) else PromptSet.from_texts(list(prompts))
    return prompt_set.apply_chat_template(tokenizer)


def post_instruction_tokens(tokenizer) -> tuple[str, ...]:
    """The chat template's tokens after the user's text, up to where the answer starts (as token strings).

    Raises when the tokenizer has no chat template: pass ``positions=(-1,)`` to use the last token only.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise InterpError("the tokenizer has no chat template, so there are no post-instruction tokens; "
                          "pass positions=(-1,) (--positions -1) to use the last token, "
                          "or load a chat model.")  # fmt: skip
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PLACEHOLDER}], tokenize=False, add_generation_prompt=True
    )
    suffix = text.split(PLACEHOLDER, 1)[1]
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    return tuple(tokenizer.convert_ids_to_tokens(ids))


def check_suffix(model, token_lists: Sequence, n_positions: int) -> None:
    """Raise unless every formatted prompt ends in the same ``n_positions`` tokens (the template's, not the user's)."""
    ends = {tuple(ids[-n_positions:].tolist()) for ids in token_lists}
    if len(ends) != 1:
        raise InterpError(f"the formatted prompts do not all end in the same {n_positions} template tokens "
                          "(the user's text merges into the template's tokens); "
                          "end each instruction with a word, or pass fewer positions.")  # fmt: skip
