"""``multipart/form-data``: what ``POST /v1/files`` receives and what native mode sends.

Uploads are parsed here rather than with ``python-multipart`` (Starlette's optional dependency)
because the batch API needs only the plain case: a few named fields and one file, read whole.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message


class MultipartError(ValueError):
    """The body is not the multipart form it claims to be."""


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


def boundary_of(content_type: str | None) -> str:
    """The boundary parameter of a ``multipart/form-data`` content type."""
    if not content_type:
        raise MultipartError("send the file as multipart/form-data (no content-type was given)")
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        raise MultipartError(
            f"send the file as multipart/form-data with fields file and purpose, not "
            f"{message.get_content_type()}"
        )
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError("the multipart/form-data content type has no boundary")
    return boundary


def parse(body: bytes, content_type: str | None) -> dict[str, Part]:
    """The parts of a form by field name (the first of a repeated name wins)."""
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise MultipartError("the multipart body is truncated or its boundary does not match")
    parts: dict[str, Part] = {}
    for chunk in chunks[1:-1]:
        chunk = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("a multipart part has no header/body separator")
        headers = _headers(head)
        disposition = Message()
        disposition["content-disposition"] = headers.get("content-disposition", "")
        name = disposition.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise MultipartError("a multipart part has no name in its Content-Disposition")
        filename = disposition.get_param("filename", header="content-disposition")
        parts.setdefault(
            name,
            Part(
                name,
                data,
                filename if isinstance(filename, str) else None,
                headers.get("content-type"),
            ),
        )
    return parts


def _headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def build(fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type: ``fields`` as text parts,
    ``files`` as ``name -> (filename, content)``."""
    boundary = "aiwire" + secrets.token_hex(16)
    out: list[bytes] = []
    for name, value in fields.items():
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, content) in files.items():
        out.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"
