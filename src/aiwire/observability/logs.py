"""Log lines without secrets, as JSON when asked.

:class:`Redactor` scrubs every log record the process emits, whichever logger made it and
whichever handler prints it: the message (after ``%`` formatting), a formatted traceback and a
stack. It removes the secret values it was given (the master key, each provider key, passwords
in URLs), anything shaped like a key (:func:`aiwire.errors.scrub`: ``sk-…``, ``aiw-…``, ``AIza…``,
``AKIA…``, ``Bearer …``) and the value of any credential header or parameter written out
(``authorization: …``, ``x-api-key=…``, ``?key=…``). It sits in the log-record factory, so it
runs once per record that is actually emitted (records below a logger's level are never made)
and before any handler, including ones added later (pytest's, uvicorn's, the CLI's).

:class:`JsonFormatter` writes one JSON object per line (``logging.format: json``): ``ts``,
``level``, ``logger``, ``message``, ``exc`` when there is a traceback, and any ``extra=``
fields.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from aiwire.errors import scrub

#: ``authorization: Bearer x``, ``"x-api-key": "x"``, ``api_key=x``, ``?key=x``: the name stays,
#: the value goes.
_CREDENTIAL_FIELDS = re.compile(
    r"(?i)((?:proxy-)?authorization|x-api-key|api-key|x-goog-api-key|api_key|apikey"
    r"|master_key|password|secret)"
    r"(['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic)\s+)?(?!\[REDACTED\])[^\s'\",;&}\]]+"
)
_KEY_PARAM = re.compile(r"([?&]key=)(?!\[REDACTED\])[^&\s'\"]+")
REDACTED = "[REDACTED]"
#: Fields of a LogRecord itself; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class Redactor:
    """Scrubs text of known secrets and credential-shaped strings. Thread-safe to extend."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Known secret values to remove (shorter than 4 characters: ignored)."""
        with self._lock:
            known = set(self._secrets)
            known.update(s for s in secrets if s and len(s) >= 4)
            # Longest first, so a secret containing another is removed whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        text = scrub(text, self._secrets)
        if "=" in text or ":" in text:
            text = _CREDENTIAL_FIELDS.sub(rf"\1\2{REDACTED}", text)
            text = _KEY_PARAM.sub(rf"\1{REDACTED}", text)
        return text

    def record(self, record: logging.LogRecord) -> None:
        """Scrub ``record`` in place: its message (arguments merged in), traceback and stack."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what logging would show, scrubbed
            message = f"{record.msg!r} % {record.args!r}"
        clean = self(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            clean = self(text)
            record.exc_text = clean
            if clean != text:
                # Handlers that render the exception object themselves (rich) would show the
                # unscrubbed message: leave them only the scrubbed text.
                record.exc_info = None
        elif record.exc_text:
            record.exc_text = self(record.exc_text)
        if record.stack_info:
            record.stack_info = self(record.stack_info)
        # ``extra=`` fields (set after the record factory ran: only handler filters see them)
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and isinstance(value, str):
                record.__dict__[name] = self(value)


class RedactionFilter(logging.Filter):
    """The redactor as a handler or logger filter (for handlers of your own)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        self.redactor.record(record)
        return True


#: The process' redactor: every gateway built in this process adds its secrets to it.
REDACTOR = Redactor()
_installed = False
_install_lock = threading.Lock()


def install_redaction(*secrets: str | None) -> Redactor:
    """Scrub every log record of this process (once), adding ``secrets`` to the known ones."""
    global _installed
    REDACTOR.add(*secrets)
    with _install_lock:
        if not _installed:
            previous = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                try:
                    REDACTOR.record(record)
                except Exception:  # logging must never raise into the caller
                    record.msg, record.args = "[log record dropped: redaction failed]", None
                return record

            logging.setLogRecordFactory(factory)
            _installed = True
    return REDACTOR


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACTOR

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redactor(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = self.redactor(record.exc_text)
        if record.stack_info:
            out["stack"] = self.redactor(record.stack_info)
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and name not in out:
                out[name] = self.redactor(value) if isinstance(value, str) else value
        return orjson.dumps(out, default=str).decode()


#: The handler :func:`configure` put on the ``aiwire`` logger (replaced on reconfiguration).
_handler: logging.Handler | None = None


def configure(
    fmt: str, level: str | None = None, *, stream: TextIO | None = None
) -> logging.Handler | None:
    """Apply ``logging.format`` / ``logging.level`` to the ``aiwire`` logger.

    ``json``: the ``aiwire`` logger gets its own handler (stderr, or ``stream``) writing JSON
    lines and stops propagating, so no line is printed twice. ``text``: the process' handlers
    stay as they are. Returns the handler installed (None for ``text``).
    """
    global _handler
    logger = logging.getLogger("aiwire")
    if level is not None:
        logger.setLevel(level.upper())
    if _handler is not None:
        logger.removeHandler(_handler)
        _handler = None
        logger.propagate = True
    if fmt != "json":
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactionFilter(REDACTOR))
    logger.addHandler(handler)
    logger.propagate = False
    _handler = handler
    return handler
