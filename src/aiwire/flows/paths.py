"""Field paths into a record: ``email``, ``lead.owner.email``, ``items[0].sku``.

A record is plain JSON data (dicts, lists, scalars). Reading a path that does not exist gives
:data:`MISSING` rather than an exception, so ``map`` can apply defaults; writing creates the
intermediate objects. Keys containing dots or brackets are not addressable (rename them first).
"""

from __future__ import annotations

import re
from typing import Any, Final

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_VALID = re.compile(r"[^.\[\]\s]+(\[\d+\])*(\.[^.\[\]\s]+(\[\d+\])*)*")


class _Missing:
    """The value of a path that leads nowhere (distinct from a present ``null``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

Segment = str | int


def parse(path: str) -> list[Segment]:
    """``"a.b[2].c"`` → ``["a", "b", 2, "c"]``; ValueError for a malformed path."""
    text = path.strip()
    if not text or not _VALID.fullmatch(text):
        raise ValueError(
            f"{path!r} is not a field path; write names separated by dots, with [N] for list "
            "items, e.g. lead.owner.email or items[0].sku"
        )
    return [
        m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _SEGMENT.finditer(text)
    ]


def get(data: Any, path: str | list[Segment]) -> Any:
    """The value at ``path`` in ``data``, or :data:`MISSING`."""
    node = data
    for seg in parse(path) if isinstance(path, str) else path:
        if isinstance(seg, int):
            if not isinstance(node, list) or seg >= len(node):
                return MISSING
            node = node[seg]
        else:
            if not isinstance(node, dict) or seg not in node:
                return MISSING
            node = node[seg]
    return node


def set_(data: dict[str, Any], path: str | list[Segment], value: Any) -> None:
    """Put ``value`` at ``path``, creating objects (and padding lists with ``None``) on the way."""
    segs = parse(path) if isinstance(path, str) else path
    node: Any = data
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        nxt: Any = None if last else ([] if isinstance(segs[i + 1], int) else {})
        if isinstance(seg, int):
            if not isinstance(node, list):
                raise ValueError(f"cannot index into a {type(node).__name__} at [{seg}]")
            while len(node) <= seg:
                node.append(None)
            if last:
                node[seg] = value
            elif not isinstance(node[seg], dict | list):
                node[seg] = nxt
            node = node[seg]
        else:
            if not isinstance(node, dict):
                raise ValueError(f"cannot set {seg!r} inside a {type(node).__name__}")
            if last:
                node[seg] = value
            elif not isinstance(node.get(seg), dict | list):
                node[seg] = nxt
            node = node[seg]


def delete(data: dict[str, Any], path: str) -> None:
    """Remove the value at ``path`` if it is there."""
    segs = parse(path)
    parent = get(data, segs[:-1]) if len(segs) > 1 else data
    last = segs[-1]
    if isinstance(last, int) and isinstance(parent, list) and last < len(parent):
        del parent[last]
    elif isinstance(last, str) and isinstance(parent, dict):
        parent.pop(last, None)


def is_path(text: str) -> bool:
    """Whether ``text`` is a well-formed path (not a template, not an expression)."""
    return bool(_VALID.fullmatch(text.strip())) and "{" not in text
