"""Which requests the cache serves and stores.

By default only deterministic requests (``temperature`` 0 or a ``seed``): replaying a sampled
answer to a caller who asked for sampling would silently change what they get. ``cache.mode``
widens that to ``all`` or turns the cache ``off``.

A client steers one request with the ``x-aiwire-cache`` header (comma-separated directives,
case-insensitive), the same header that carries ``hit`` or ``miss`` on the answer:

* ``no-cache``: do not look up, but store the fresh answer (a refresh);
* ``no-store``: neither look up nor store;
* ``force``: cache this request even if it is not deterministic.

What an operator decided wins over what a client asks: ``mode: off`` and a key whose
``options.cache`` is ``False`` are never cached, ``force`` or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiwire.errors import BadRequestError
from aiwire.types import ChatRequest

Mode = Literal["deterministic", "all", "off"]

#: The request header a client steers the cache with, and the response header saying hit/miss.
HEADER = "x-aiwire-cache"
HEADER_BYTES = b"x-aiwire-cache"
HIT = "hit"
MISS = "miss"

NO_CACHE = "no-cache"
NO_STORE = "no-store"
FORCE = "force"
DIRECTIVES = frozenset({NO_CACHE, NO_STORE, FORCE})


@dataclass(frozen=True, slots=True)
class Decision:
    """What the cache does for one request: look up an entry, store the fresh answer."""

    lookup: bool
    store: bool


SKIP = Decision(lookup=False, store=False)
USE = Decision(lookup=True, store=True)
REFRESH = Decision(lookup=False, store=True)


def directives(header: str | None) -> frozenset[str]:
    """The directives in an ``x-aiwire-cache`` request header.

    An unknown one is refused (400) rather than ignored: a misspelt ``no-store`` would otherwise
    quietly serve and keep answers the client meant to keep out of the cache.
    """
    if not header:
        return frozenset()
    found = frozenset(d for d in (p.strip().lower() for p in header.split(",")) if d)
    unknown = found - DIRECTIVES
    if unknown:
        raise BadRequestError(
            f"unknown {HEADER} directive {sorted(unknown)[0]!r}; "
            f"use {NO_CACHE}, {NO_STORE} or {FORCE}",
            param=HEADER,
            code="invalid_cache_directive",
        )
    return found


def deterministic(request: ChatRequest) -> bool:
    """Temperature 0 or a seed: the requests cached by default."""
    return request.temperature == 0 or request.seed is not None


def key_opted_out(options: Mapping[str, Any] | None) -> bool:
    """Whether a virtual key's options turn the cache off for it (``cache: false``)."""
    return options is not None and options.get("cache") is False


def decide(
    request: ChatRequest, mode: Mode, header: str | None = None, *, opted_out: bool = False
) -> Decision:
    """Whether to look this request up and whether to store its answer.

    ``header`` is the raw ``x-aiwire-cache`` request header; ``opted_out`` the key's opt-out
    (:func:`key_opted_out`). Raises :class:`~aiwire.errors.BadRequestError` for an unknown
    directive.
    """
    wanted = directives(header)
    if mode == "off" or opted_out or NO_STORE in wanted:
        return SKIP
    if mode != "all" and FORCE not in wanted and not deterministic(request):
        return SKIP
    return REFRESH if NO_CACHE in wanted else USE


def cacheable(
    request: ChatRequest, mode: Mode, header: str | None = None, *, opted_out: bool = False
) -> bool:
    """Whether the cache takes part in this request at all (its answer may be stored; it is
    also looked up unless the header says ``no-cache``: see :func:`decide`)."""
    return decide(request, mode, header, opted_out=opted_out).store
