"""Input lines, CSV templates, output lines, completion windows and multipart uploads."""

from __future__ import annotations

import orjson
import pytest
from tests.batch.conftest import chat_lines, jsonl

from aiwire.batch import lines, multipart
from aiwire.batch.records import window_seconds


def known(model: str) -> bool:
    return model in ("sim-gpt", "sim-claude", "sim-embed")


def test_valid_lines_keep_their_line_numbers_and_blank_lines_are_skipped() -> None:
    data = b"\n" + jsonl(chat_lines(2)) + b"\n\n" + jsonl(chat_lines(1, start=2))
    parsed = lines.parse_jsonl(data, endpoint=lines.CHAT, known_model=known)
    assert parsed.errors == []
    assert [(s.idx, s.custom_id) for s in parsed.lines] == [
        (2, "req-0"),
        (3, "req-1"),
        (6, "req-2"),
    ]
    assert orjson.loads(parsed.lines[0].body)["model"] == "sim-claude"


def test_model_override_and_missing_method_and_url_default_to_the_batch() -> None:
    item = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}
    parsed = lines.parse_jsonl(
        orjson.dumps(item), endpoint=lines.CHAT, known_model=known, model="sim-gpt"
    )
    assert parsed.errors == [] and parsed.models == ["sim-gpt"]


def test_embeddings_lines_are_validated_with_the_embeddings_parser() -> None:
    good = {
        "custom_id": "e1",
        "url": lines.EMBEDDINGS,
        "body": {"model": "sim-embed", "input": "x"},
    }
    bad = {"custom_id": "e2", "url": lines.EMBEDDINGS, "body": {"model": "sim-embed"}}
    parsed = lines.parse_jsonl(jsonl([good, bad]), endpoint=lines.EMBEDDINGS, known_model=known)
    assert [s.custom_id for s in parsed.lines] == ["e1"]
    (error,) = parsed.errors
    assert (error.line, error.code, error.param) == (2, "missing_required_parameter", "body.input")


def test_errors_are_capped_but_counted_and_an_empty_file_or_too_many_lines_fail() -> None:
    data = b"\n".join(b"not json" for _ in range(lines.MAX_ERRORS + 5))
    parsed = lines.parse_jsonl(data, endpoint=lines.CHAT, known_model=known)
    assert len(parsed.errors) == lines.MAX_ERRORS and parsed.error_count == lines.MAX_ERRORS + 5
    empty = lines.parse_jsonl(b"\n \n", endpoint=lines.CHAT, known_model=known)
    assert [e.code for e in empty.errors] == ["empty_file"]
    many = lines.parse_jsonl(
        jsonl(chat_lines(3)), endpoint=lines.CHAT, known_model=known, max_lines=2
    )
    assert [(e.code, e.line) for e in many.errors] == [("too_many_lines", 3)]


def test_output_lines_splice_the_stored_body_unchanged() -> None:
    line = lines.output_line(
        "batch_x",
        7,
        "c7",
        status_code=200,
        request_id="req_1",
        response=b'{"object":"chat.completion","n":1.50}',
        error=None,
    )
    assert line.endswith(b"\n")
    data = orjson.loads(line)
    assert data == {
        "id": lines.request_line_id("batch_x", 7),
        "custom_id": "c7",
        "response": {
            "status_code": 200,
            "request_id": "req_1",
            "body": {"object": "chat.completion", "n": 1.5},
        },
        "error": None,
    }
    assert lines.request_line_id("batch_x", 7) == lines.request_line_id("batch_x", 7)
    expired = orjson.loads(
        lines.output_line(
            "b", 1, "c", status_code=None, request_id=None, response=None, error=lines.EXPIRED_ERROR
        )
    )
    assert expired["response"] is None and expired["error"]["code"] == "batch_expired"


def test_csv_rows_become_chat_lines_from_the_template() -> None:
    data = 'id,text,lang\n7,"printer, on fire",en\n8,écran noir,fr\n'.encode()
    out = lines.csv_to_jsonl(
        data, "Classify ({lang}): {text}", model="sim-gpt", system="Be brief", max_tokens=5
    )
    items = [orjson.loads(x) for x in out.splitlines()]
    assert [i["custom_id"] for i in items] == ["7", "8"]
    assert items[0]["body"] == {
        "model": "sim-gpt",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Classify (en): printer, on fire"},
        ],
        "max_tokens": 5,
    }
    assert items[1]["body"]["messages"][1]["content"] == "Classify (fr): écran noir"
    no_ids = lines.csv_to_jsonl(b"text\na\nb\n", "{text}", model="m")
    assert [orjson.loads(x)["custom_id"] for x in no_ids.splitlines()] == ["row-1", "row-2"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Classify {body}", "column(s) body that the CSV does not have; its columns: id, text"),
        ("Classify {", "invalid --template"),
        ("Classify {}", "must name a CSV column"),
    ],
)
def test_a_template_that_does_not_fit_the_csv_is_refused(template: str, message: str) -> None:
    with pytest.raises(lines.TemplateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lines.csv_to_jsonl(b"id,text\n1,a\n", template, model="m")


@pytest.mark.parametrize(
    ("window", "seconds"), [("24h", 86400), ("30m", 1800), ("90s", 90), ("7d", 604800)]
)
def test_completion_windows(window: str, seconds: float) -> None:
    assert window_seconds(window) == seconds


@pytest.mark.parametrize("window", ["", "24", "0h", "8d", "1w", "-1h"])
def test_bad_completion_windows(window: str) -> None:
    with pytest.raises(ValueError, match="completion_window"):
        window_seconds(window)


def test_multipart_round_trip_and_refusals() -> None:
    content = b"line one\r\n--not-a-boundary\r\nline two"
    body, content_type = multipart.build({"purpose": "batch"}, {"file": ("in.jsonl", content)})
    parts = multipart.parse(body, content_type)
    assert parts["purpose"].data == b"batch"
    assert parts["file"].data == content and parts["file"].filename == "in.jsonl"
    with pytest.raises(multipart.MultipartError, match="multipart/form-data"):
        multipart.parse(body, "application/json")
    with pytest.raises(multipart.MultipartError, match="truncated"):
        multipart.parse(body[:-10], content_type)
    with pytest.raises(multipart.MultipartError, match="no boundary"):
        multipart.parse(body, "multipart/form-data")
