"""Fuzz ``PromptSet.from_file`` in every format (JSONL, JSON, CSV, TXT): random and damaged files must
read as a prompt set (which hashes and saves) or be refused with InterpError; nothing else may escape."""

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st

from interp.data import PromptSet

from fuzzing import FUZZ, any_text, damaged_bytes, json_values, only_interp_errors

VALID = {
    ".jsonl": b'{"text": "how do i bake bread ?", "label": "benign"}\n{"text": "how do i pick a lock ?", "label": "harmful"}\n',
    ".json": b'[{"text": "how do i bake bread ?", "label": "benign"}, {"text": "how do i pick a lock ?", "label": "harmful"}]',
    ".csv": b'text,label\nhow do i bake bread ?,benign\n"how do i, pick a lock ?",harmful\n',
    ".txt": b"how do i bake bread ?\nhow do i pick a lock ?\r\n",
}
prompt_text = st.text(st.characters(codec="utf-8"), max_size=20)
# records that mostly look like prompts: a text (maybe a lone surrogate, maybe not a string) and random fields
prompt_records = st.fixed_dictionaries({"text": any_text | json_values}, optional={"label": json_values, "topic": json_values}) | json_values


def read_prompt_file(suffix: str, data: bytes, text_field: str = "text") -> None:
    """Write ``data`` as a prompt file and read it as a user would: parse, hash and save the prompts."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"prompts{suffix}"
        path.write_bytes(data)

        def load() -> bool:
            prompts = PromptSet.from_file(path, text_field=text_field)
            assert len(prompts.texts) == len(prompts.labels) == len(prompts) >= 1
            assert len(prompts.hash) == 32
            prompts.to_jsonl(Path(directory) / "saved.jsonl")
            assert PromptSet.from_file(Path(directory) / "saved.jsonl").texts == prompts.texts
            return True

        event(f"{suffix} read" if only_interp_errors(load) else f"{suffix} refused")


def csv_text(rows: list[list[str]], delimiter: str) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter).writerows(rows)
    return out.getvalue().encode("utf-8")


def test_the_valid_files_read():
    for suffix, data in VALID.items():
        assert len(PromptSet.from_file(_write(suffix, data))) == 2


def _write(suffix: str, data: bytes) -> Path:
    path = Path(tempfile.mkdtemp()) / f"prompts{suffix}"
    path.write_bytes(data)
    return path


@FUZZ
@given(suffix=st.sampled_from(sorted(VALID)), data=st.data())
def test_a_damaged_prompt_file_is_read_or_refused(suffix, data):
    read_prompt_file(suffix, data.draw(damaged_bytes(VALID[suffix])))


@FUZZ
@given(suffix=st.sampled_from(sorted(VALID)), raw=st.binary(max_size=64) | any_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_in_any_format_are_read_or_refused(suffix, raw):
    read_prompt_file(suffix, raw)


@FUZZ
@given(records=st.lists(prompt_records, max_size=4), text_field=st.sampled_from(["text", "prompt", ""]))
def test_jsonl_and_json_of_random_values_are_read_or_refused(records, text_field):
    read_prompt_file(".jsonl", "".join(json.dumps(record) + "\n" for record in records).encode(), text_field)
    read_prompt_file(".json", json.dumps(records).encode(), text_field)


@FUZZ
@given(header=st.lists(prompt_text, min_size=0, max_size=3), rows=st.lists(st.lists(prompt_text, max_size=4), max_size=4),
       delimiter=st.sampled_from([",", ";", "\t"]), long_field=st.booleans())  # fmt: skip
def test_csv_of_random_rows_is_read_or_refused(header, rows, delimiter, long_field):
    header = ["text", *header] if len(header) % 2 == 0 else header  # most files name a text column
    if long_field and rows and rows[0]:
        rows[0][0] = "x" * 140_000  # over the csv module's default field limit
    read_prompt_file(".csv", csv_text([header, *rows], delimiter))


@FUZZ
@given(lines=st.lists(prompt_text, max_size=6), ending=st.sampled_from(["\n", "\r\n", "\u2028", "\r"]))
def test_txt_of_random_lines_is_read_or_refused(lines, ending):
    read_prompt_file(".txt", ending.join(lines).encode("utf-8"))
