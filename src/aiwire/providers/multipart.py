"""``multipart/form-data``, both ways: reading a client's upload and writing one upstream.

Small and strict on purpose: the whole body is already in memory (the gateway read it under its
size limit), so parsing is a split on the boundary rather than a streaming state machine, and
python-multipart (a dependency for one endpoint) is not needed. Only what RFC 7578 form data
uses is understood: ``Content-Disposition: form-data; name=...; filename=...`` and a part's
``Content-Type``. Anything malformed is a :class:`~aiwire.errors.BadRequestError` naming it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote

from aiwire import errors

#: More parts than any form aiwire accepts has; a body with more is refused, not parsed.
MAX_PARTS = 64
#: The headers of one part (name, filename, type) never need more.
MAX_PART_HEADER_BYTES = 8192

_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@dataclass(frozen=True, slots=True)
class Part:
    """One form field: ``filename`` is set for a file upload."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _bad(message: str) -> errors.BadRequestError:
    return errors.BadRequestError(message, code="invalid_multipart")


def content_params(value: str) -> tuple[str, dict[str, str]]:
    """``multipart/form-data; boundary="x"`` → (``multipart/form-data``, ``{boundary: x}``).
    Parameter names are lower-cased; quoted values unquoted."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
    return kind.strip().lower(), params


def parse(body: bytes, content_type: str | None) -> list[Part]:
    """The parts of a ``multipart/form-data`` body, in order."""
    if content_type is None:
        raise _bad("the request needs Content-Type: multipart/form-data with a boundary")
    kind, params = content_params(content_type)
    boundary = params.get("boundary")
    if kind != "multipart/form-data" or not boundary:
        raise _bad(
            f"expected Content-Type multipart/form-data with a boundary, not {kind or 'none'!r}"
        )
    if len(boundary) > 200:
        raise _bad("the multipart boundary is longer than 200 characters")
    delimiter = b"--" + boundary.encode("latin-1")
    # The first delimiter may open the body (no preamble); every later one follows a CRLF.
    start = 0 if body.startswith(delimiter) else body.find(b"\r\n" + delimiter)
    if start < 0:
        raise _bad("the multipart body has no part (its boundary never appears)")
    if start > 0:
        start += 2
    chunks = body[start:].split(b"\r\n" + delimiter)
    # chunks[0] is "--boundary<CRLF>headers..."; each later one starts right after a delimiter.
    first = chunks[0]
    chunks[0] = first[len(delimiter) :]
    parts: list[Part] = []
    closed = False
    for chunk in chunks:
        if chunk.startswith(b"--"):
            closed = True
            break
        if not chunk.startswith(b"\r\n"):
            raise _bad("a multipart delimiter is not followed by a line break")
        if len(parts) >= MAX_PARTS:
            raise _bad(f"the multipart body has more than {MAX_PARTS} parts")
        parts.append(_part(chunk[2:]))
    if not closed:
        raise _bad("the multipart body ends without its closing delimiter")
    return parts


def _part(chunk: bytes) -> Part:
    head, sep, data = chunk.partition(b"\r\n\r\n")
    if not sep:
        if chunk.startswith(b"\r\n"):  # no headers at all
            raise _bad("a multipart part has no Content-Disposition header")
        raise _bad("a multipart part has no blank line after its headers")
    if len(head) > MAX_PART_HEADER_BYTES:
        raise _bad("the headers of a multipart part are too long")
    disposition = None
    content_type = None
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise _bad(f"a multipart part has a malformed header line {line[:40]!r}")
        name = name.strip().lower()
        if name == "content-disposition":
            disposition = value.strip()
        elif name == "content-type":
            content_type = value.strip()
    if disposition is None:
        raise _bad("a multipart part has no Content-Disposition header")
    kind, params = content_params(disposition)
    if kind != "form-data" or "name" not in params:
        raise _bad("a multipart part's Content-Disposition is not form-data with a name")
    filename = params.get("filename")
    if "filename*" in params:  # RFC 5987: utf-8''percent-encoded
        charset, _, encoded = params["filename*"].partition("''")
        filename = unquote(encoded, encoding=charset or "utf-8", errors="replace")
    return Part(params["name"], data, filename, content_type)


# --- writing ----------------------------------------------------------------------------------


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def encode(
    fields: list[tuple[str, str]],
    files: list[tuple[str, str, str, bytes]],
    *,
    boundary: str | None = None,
) -> tuple[bytes, str]:
    """A form body and its Content-Type. ``fields``: (name, value); ``files``: (name,
    filename, content type, bytes). Fields come first, as the official SDKs send them."""
    boundary = boundary or f"aiwire-{os.urandom(12).hex()}"
    delimiter = f"--{boundary}\r\n".encode()
    out: list[bytes] = []
    for name, value in fields:
        out += [
            delimiter,
            f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode(),
            value.encode(),
            b"\r\n",
        ]
    for name, filename, ctype, data in files:
        out += [
            delimiter,
            (
                f'Content-Disposition: form-data; name="{_quote(name)}"; '
                f'filename="{_quote(filename)}"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode(),
            data,
            b"\r\n",
        ]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


__all__ = ["MAX_PARTS", "Part", "content_params", "encode", "parse"]
