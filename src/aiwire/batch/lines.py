"""Batch input and output lines in OpenAI's format, validated up front.

An input line is ``{"custom_id": ..., "method": "POST", "url": <endpoint>, "body": {...}}``.
:func:`parse_jsonl` checks every line before anything runs (JSON, custom_id present and unique,
method, url equal to the batch's endpoint, a body the gateway's own parser accepts, a model this
gateway serves) and reports every problem with its 1-based line number, the way OpenAI's batch
``errors`` do, so a user fixes a file in one go rather than one error per upload.

Input may also be CSV (:func:`csv_to_jsonl`): each row becomes a chat line whose user message is
a template filled from the row's columns.

Output lines (:func:`output_line`) are OpenAI's: ``{"id", "custom_id", "response":
{"status_code", "request_id", "body"}, "error"}``, with ``response`` null and ``error`` set for
requests that never ran (expired, cancelled).
"""

from __future__ import annotations

import csv
import hashlib
import io
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from aiwire import errors
from aiwire.server import openai_wire
from aiwire.types import ChatRequest, EmbeddingRequest

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
#: The endpoints a batch line may call.
ENDPOINTS = (CHAT, EMBEDDINGS)
#: OpenAI's limit per input file (configurable per service).
MAX_LINES = 50_000
#: Longest custom_id accepted (it is a unique-indexed column).
MAX_CUSTOM_ID = 512
#: At most this many validation errors are reported (the first ones, in line order).
MAX_ERRORS = 1000


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One valid input line: ``idx`` is its 1-based line number in the file."""

    idx: int
    custom_id: str
    model: str
    body: bytes  # the request body as JSON, with ``model`` set


@dataclass(frozen=True, slots=True)
class LineError:
    """A validation error in OpenAI's batch ``errors.data`` shape."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None

    def public(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message} ({self.code})"


@dataclass(slots=True)
class Parsed:
    lines: list[LineSpec] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0

    @property
    def models(self) -> list[str]:
        return sorted({line.model for line in self.lines})

    def fail(self, error: LineError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)


def parse_request(endpoint: str, body: bytes) -> ChatRequest | EmbeddingRequest:
    """A line's body as the canonical request the router takes (the gateway's own parsers, so a
    batch accepts exactly what the synchronous endpoint accepts). BadRequestError if invalid."""
    if endpoint == EMBEDDINGS:
        return openai_wire.parse_embeddings(body)
    request = openai_wire.parse_chat(body)
    if request.stream:
        raise errors.BadRequestError(
            "batch requests cannot stream; remove 'stream' from the body",
            param="stream",
            code="invalid_value",
        )
    return request


def parse_jsonl(
    data: bytes,
    *,
    endpoint: str,
    known_model: Callable[[str], bool],
    model: str | None = None,
    max_lines: int = MAX_LINES,
) -> Parsed:
    """Validate a whole input file. ``model`` (the CLI's ``--model``) replaces every line's
    model; ``known_model`` says whether this gateway serves a model name."""
    out = Parsed()
    if endpoint not in ENDPOINTS:
        out.fail(
            LineError(
                "invalid_endpoint",
                f"endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}",
                param="endpoint",
            )
        )
        return out
    seen: set[str] = set()
    count = 0
    for number, raw in _lines(data):
        count += 1
        if count > max_lines:
            out.fail(
                LineError(
                    "too_many_lines",
                    f"the file has more than {max_lines:,} requests, the most one batch takes; "
                    "split it into several batches",
                    line=number,
                )
            )
            break
        spec = _line(number, raw, endpoint, known_model, model, seen, out)
        if spec is not None:
            out.lines.append(spec)
    if count == 0:
        out.fail(LineError("empty_file", "the input file has no requests"))
    return out


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.strip()
        if raw:
            yield number, raw


def _line(
    number: int,
    raw: bytes,
    endpoint: str,
    known_model: Callable[[str], bool],
    model: str | None,
    seen: set[str],
    out: Parsed,
) -> LineSpec | None:
    def fail(code: str, message: str, param: str | None = None) -> None:
        out.fail(LineError(code, message, line=number, param=param))

    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        fail("invalid_json_line", f"this line is not valid JSON: {exc}")
        return None
    if not isinstance(item, dict):
        fail("invalid_json_line", "each line must be a JSON object {custom_id, method, url, body}")
        return None
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        fail("missing_custom_id", "each request needs a non-empty string custom_id", "custom_id")
        return None
    if len(custom_id) > MAX_CUSTOM_ID:
        fail("invalid_custom_id", f"custom_id is longer than {MAX_CUSTOM_ID}", "custom_id")
        return None
    if custom_id in seen:
        fail(
            "duplicate_custom_id",
            f"custom_id {custom_id!r} is used more than once; each request needs its own",
            "custom_id",
        )
        return None
    seen.add(custom_id)
    method = item.get("method", "POST")
    if method != "POST":
        fail("invalid_method", f"method must be POST, not {method!r}", "method")
        return None
    url = item.get("url", endpoint)
    if url != endpoint:
        fail(
            "mismatched_endpoint",
            f"url {url!r} does not match the batch's endpoint {endpoint}",
            "url",
        )
        return None
    body = item.get("body")
    if not isinstance(body, dict):
        fail("invalid_body", "body must be a JSON object (the request's parameters)", "body")
        return None
    if model is not None:
        body = {**body, "model": model}
    name = body.get("model")
    if not isinstance(name, str) or not name:
        fail("missing_required_parameter", "Missing required parameter: 'body.model'.", "model")
        return None
    if not known_model(name):
        fail("model_not_found", f"model {name!r} is not served by this gateway", "body.model")
        return None
    encoded = orjson.dumps(body)
    try:
        parse_request(endpoint, encoded)
    except errors.AIWireError as exc:
        param = f"body.{exc.param}" if exc.param else "body"
        fail(exc.code or "invalid_request", exc.message, param)
        return None
    return LineSpec(number, custom_id, name, encoded)


# --- CSV input --------------------------------------------------------------------------------


class TemplateError(ValueError):
    """A CSV template that does not fit the file (an unknown column, bad braces)."""


def template_fields(template: str) -> list[str]:
    """The column names a ``{column}`` template uses; TemplateError on bad syntax."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"invalid --template: {exc} (write {{{{ and }}}} for braces)") from None
    names = [name for _, name, _, _ in parsed if name is not None]
    if any(not n or "." in n or "[" in n for n in names):
        raise TemplateError("every {...} in --template must name a CSV column, e.g. {ticket}")
    return names


def csv_to_jsonl(
    data: bytes,
    template: str,
    *,
    model: str,
    id_column: str | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
) -> bytes:
    """Chat lines from a CSV file with a header row: each row's user message is ``template``
    with ``{column}`` replaced by the row's value; its custom_id is ``id_column`` (default: a
    ``custom_id`` or ``id`` column if there is one, else ``row-<n>``)."""
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    wanted = template_fields(template)
    missing = [n for n in wanted if n not in columns]
    if missing:
        raise TemplateError(
            f"--template names column(s) {', '.join(missing)} that the CSV does not have; "
            f"its columns: {', '.join(columns) or 'none (no header row?)'}"
        )
    if id_column is None:
        id_column = next((c for c in ("custom_id", "id") if c in columns), None)
    elif id_column not in columns:
        raise TemplateError(f"--id-column {id_column!r} is not a column of the CSV")
    out = io.BytesIO()
    for n, row in enumerate(reader, start=1):
        values: Mapping[str, str] = {k: (v or "") for k, v in row.items() if k is not None}
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": template.format_map(values)})
        body: dict[str, Any] = {"model": model, "messages": messages}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        custom_id = values.get(id_column, "") if id_column else ""
        line = {
            "custom_id": custom_id or f"row-{n}",
            "method": "POST",
            "url": CHAT,
            "body": body,
        }
        out.write(orjson.dumps(line) + b"\n")
    return out.getvalue()


# --- output -----------------------------------------------------------------------------------


def request_line_id(batch_id: str, idx: int) -> str:
    """The ``batch_req_...`` id of a line's output, the same every time it is written."""
    return "batch_req_" + hashlib.sha256(f"{batch_id}:{idx}".encode()).hexdigest()[:24]


def output_line(
    batch_id: str,
    idx: int,
    custom_id: str,
    *,
    status_code: int | None,
    request_id: str | None,
    response: bytes | None,
    error: Mapping[str, Any] | None,
) -> bytes:
    """One line of an output or error file (with its newline)."""
    head = orjson.dumps({"id": request_line_id(batch_id, idx), "custom_id": custom_id})
    if response is not None:
        envelope = (
            b'{"status_code":'
            + orjson.dumps(status_code)
            + b',"request_id":'
            + orjson.dumps(request_id)
            + b',"body":'
            + response
            + b"}"
        )
    else:
        envelope = b"null"
    # The stored body is JSON already: splice it in rather than decode and encode it again.
    return head[:-1] + b',"response":' + envelope + b',"error":' + orjson.dumps(error) + b"}\n"


EXPIRED_ERROR = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}
CANCELLED_ERROR = {
    "code": "batch_cancelled",
    "message": "This request was not executed because the batch was cancelled.",
}
