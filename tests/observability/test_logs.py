"""Log redaction (every record, any logger, any handler) and the JSON format."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from aiwire.observability import logs
from aiwire.observability.logs import JsonFormatter, Redactor

MASTER = "sk-aiwire-master-logs-0123456789"
PROVIDER = "provider-secret-value-9f8e7d6c"  # not key-shaped: only known values catch it


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        (f"master is {MASTER}", MASTER, "master is"),
        (f"upstream said {PROVIDER}!", PROVIDER, "upstream said"),
        ("key aiw-AbCdEfGhIjKlMnOpQrStUv0123456789abcd used", "aiw-AbCdEfGh", "used"),
        ("headers {'authorization': 'Bearer tok123456789'}", "tok123456789", "authorization"),
        ('{"x-api-key": "anthropic-value-1"}', "anthropic-value-1", "x-api-key"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Authorization"),
        ("GET /v1beta/models?key=AIzaSyA-secret-value&alt=sse", "AIzaSyA-secret", "alt=sse"),
        ("api_key=hunter2hunter2 model=gpt", "hunter2hunter2", "model=gpt"),
        ("redis://:pa55word@host:6379/0 password=pa55word", "pa55word", "redis://"),
    ],
)
def test_redactor_removes_secrets_and_keeps_the_rest(text: str, gone: str, kept: str) -> None:
    redact = Redactor([MASTER, PROVIDER, "pa55word"])
    clean = redact(text)
    assert gone not in clean
    assert kept in clean
    assert "[REDACTED]" in clean


def test_plain_text_is_left_alone() -> None:
    text = "deployment sim-gpt@sim-openai/gpt-4o-mini cooling down for 30s (status: 503)"
    assert Redactor([MASTER])(text) == text


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


def test_every_record_of_the_process_is_scrubbed_before_any_handler() -> None:
    logs.install_redaction(MASTER, PROVIDER)
    handler = _Collect()
    other = logging.getLogger("some.library")  # not an aiwire logger, a handler of its own
    other.addHandler(handler)
    other.setLevel(logging.DEBUG)
    try:
        other.info("calling with %s and %r", MASTER, {"authorization": f"Bearer {PROVIDER}"})
        try:
            raise RuntimeError(f"upstream refused key {PROVIDER}")
        except RuntimeError:
            other.exception("failed")
    finally:
        other.removeHandler(handler)
    text = "\n".join(handler.lines)
    assert MASTER not in text and PROVIDER not in text
    assert "calling with [REDACTED]" in text
    assert "RuntimeError: upstream refused key [REDACTED]" in text  # the traceback, scrubbed
    failed = handler.records[1]
    # a handler that renders the exception object itself cannot bring the secret back
    assert failed.exc_info is None and failed.exc_text is not None
    assert "[REDACTED]]" not in text  # a redacted value is not redacted again


def test_the_filter_also_scrubs_extra_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None)
    record.token = PROVIDER
    logs.RedactionFilter(Redactor([PROVIDER])).filter(record)
    assert record.token == "[REDACTED]"


def test_json_lines_on_the_aiwire_logger() -> None:
    stream = io.StringIO()
    logs.install_redaction(MASTER)
    handler = logs.configure("json", "info", stream=stream)
    try:
        assert handler is not None
        log = logging.getLogger("aiwire.server")
        log.info("served %s with key %s", "sim-gpt", MASTER, extra={"request_id": "req_1"})
        log.debug("not at this level")
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.exception("boom")
        assert logging.getLogger("aiwire").propagate is False
    finally:
        logs.configure("text")
    assert logging.getLogger("aiwire").propagate is True
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["level"] == "info" and first["logger"] == "aiwire.server"
    assert first["message"] == "served sim-gpt with key [REDACTED]"
    assert first["request_id"] == "req_1"
    assert first["ts"].endswith("+00:00")
    assert "ZeroDivisionError" in lines[1]["exc"]
    # the formatter itself also redacts, for records made before redaction was installed
    record = logging.LogRecord("aiwire.x", logging.INFO, "f", 1, MASTER, None, None)
    assert MASTER not in JsonFormatter(Redactor([MASTER])).format(record)
