"""The gateway's storage: virtual keys, the request log and the audit trail.

SQLite by default, PostgreSQL by URL, one async code path (SQLAlchemy 2). The schema is managed
by Alembic revisions shipped in this package and applied by :meth:`Database.migrate` at start.
Request-log rows are written off the hot path by :class:`LogWriter`. No secret is ever stored:
virtual keys are kept as hashes, and prompts/completions only when configured.
"""

from aiwire.store import audit
from aiwire.store.db import Database, StoreError, async_url, head_revision
from aiwire.store.keys import (
    KeyRecord,
    KeyStateError,
    KeyStore,
    UnknownKeyError,
    hash_secret,
)
from aiwire.store.models import ApiKey, AuditLog, Base, Budget, RequestLog
from aiwire.store.writer import LogWriter, RequestLogRow

__all__ = [
    "ApiKey",
    "AuditLog",
    "Base",
    "Budget",
    "Database",
    "KeyRecord",
    "KeyStateError",
    "KeyStore",
    "LogWriter",
    "RequestLog",
    "RequestLogRow",
    "StoreError",
    "UnknownKeyError",
    "async_url",
    "audit",
    "hash_secret",
    "head_revision",
]
