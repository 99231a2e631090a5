"""Prompt files at the edges of their formats: CSV rows with extra fields, CSV fields longer than the
csv module's default limit, deeply nested JSON. Each reads correctly or is one InterpError with the fix."""

import json

import pytest

from interp.data import PromptSet
from interp.errors import InterpError

CSV_DEFAULT_FIELD_LIMIT = 131_072  # csv.field_size_limit() unless raised


def test_a_csv_row_with_an_extra_field_names_the_line_and_the_fix(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("text,label\nhow do i bake bread ?,benign\nhow do i, pick a lock ?,harmful\n", encoding="utf-8")
    with pytest.raises(InterpError) as caught:
        PromptSet.from_file(path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{path}, line 3: 3 fields but the header has 2" in message
    assert 'quote a field that holds a comma ("a, b")' in message


def test_a_quoted_comma_in_a_csv_field_is_one_field(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('text,label\n"how do i, pick a lock ?",harmful\n', encoding="utf-8")
    assert PromptSet.from_file(path).texts == ["how do i, pick a lock ?"]


def test_a_csv_row_with_fewer_fields_lacks_its_text_and_says_so(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("label,text\nbenign\n", encoding="utf-8")
    with pytest.raises(InterpError, match="prompt 0 .* has no text"):
        PromptSet.from_file(path)


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_a_csv_field_over_the_default_field_limit_is_read_whole(tmp_path, quoted):
    long_text = "a long prompt " * (CSV_DEFAULT_FIELD_LIMIT // 14 + 10)
    assert len(long_text) > CSV_DEFAULT_FIELD_LIMIT
    field = f'"{long_text}"' if quoted else long_text
    path = tmp_path / "prompts.csv"
    path.write_text(f"text,label\n{field},benign\nshort,harmful\n", encoding="utf-8")
    prompts = PromptSet.from_file(path)
    assert prompts.texts == [long_text, "short"] and prompts.labels == ["benign", "harmful"]


def test_an_unterminated_csv_quote_is_read_as_one_field_not_a_traceback(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('text\n"never closed\nsecond line\n', encoding="utf-8")
    assert PromptSet.from_file(path).texts == ["never closed\nsecond line\n"]


def test_a_txt_line_over_the_csv_limit_is_read_whole(tmp_path):
    long_line = "x" * (2 * CSV_DEFAULT_FIELD_LIMIT)
    path = tmp_path / "prompts.txt"
    path.write_text(long_line + "\nshort\n", encoding="utf-8")
    assert PromptSet.from_file(path).texts == [long_line, "short"]


def test_json_nested_too_deeply_is_an_interp_error(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(InterpError, match="nested too deeply"):
        PromptSet.from_file(path)


def test_a_json_list_of_records_reads_with_its_labels(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}]), encoding="utf-8")
    assert PromptSet.from_file(path).labels == [1, 0]
