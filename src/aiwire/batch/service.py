"""The operations behind ``/v1/files`` and ``/v1/batches``, for one caller at a time.

A file or batch belongs to the key that created it: that key and the master key see it, no one
else (another key gets 404, as if it did not exist). Creating a batch checks, in this order:
the input file (exists, yours, ``purpose=batch``), the completion window and metadata, every
line (:func:`aiwire.batch.lines.parse_jsonl`: a file with any bad line gives a ``failed`` batch
listing the errors, like OpenAI's ``validating -> failed``), the key's scopes for each model,
native mode's requirements, then the estimate against the key's budgets (429 naming both
amounts). Only then are the lines stored and the worker woken. A key scoped to some endpoints
may batch requests to those endpoints and models only (checked per model, with the batch's
endpoint, as a synchronous request would be).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from aiwire import errors
from aiwire.batch import lines
from aiwire.batch.budget import NATIVE_PRICE, BudgetGuard, estimate
from aiwire.batch.native import native_deployment, prefers_native
from aiwire.batch.records import (
    MODES,
    NATIVE_WINDOW,
    BatchRecord,
    FileRecord,
    window_seconds,
)
from aiwire.batch.runner import BatchWorker, WorkerSettings
from aiwire.batch.store import BatchNotFound, BatchStore, Draft
from aiwire.limits.pricing import Pricing
from aiwire.router import Router
from aiwire.server.auth import Principal

log = logging.getLogger("aiwire.batch")

#: OpenAI's limits on a batch's metadata.
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512


@dataclass(slots=True)
class BatchSettings:
    """Limits of the batch API and its worker (``AIWIRE_BATCH_*`` variables, read once)."""

    max_file_bytes: int = 200 * 1024 * 1024
    max_lines: int = lines.MAX_LINES
    #: Dispatches per line before a retryable failure becomes its outcome.
    max_attempts: int = 5
    #: Run a worker in this process (off when dedicated ``aiwire worker`` processes do it).
    run_worker: bool = True
    worker: WorkerSettings = field(default_factory=WorkerSettings)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> BatchSettings:
        env = dict(os.environ if environ is None else environ)
        worker = WorkerSettings()
        settings = cls(worker=worker)

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if raw is None:
                return default
            try:
                return float(raw)
            except ValueError:
                raise errors.ConfigError(f"{name} must be a number, not {raw!r}") from None

        settings.run_worker = env.get("AIWIRE_BATCH_WORKER", "1").lower() not in ("0", "off", "no")
        worker.max_concurrency = max(1, int(number("AIWIRE_BATCH_CONCURRENCY", 64)))
        worker.poll_interval = number("AIWIRE_BATCH_POLL_INTERVAL", worker.poll_interval)
        worker.native_poll_interval = number(
            "AIWIRE_BATCH_NATIVE_POLL_INTERVAL", worker.native_poll_interval
        )
        worker.lease = number("AIWIRE_BATCH_LEASE", worker.lease)
        settings.max_attempts = max(1, int(number("AIWIRE_BATCH_MAX_ATTEMPTS", 5)))
        return settings


class BatchService:
    def __init__(
        self,
        store: BatchStore,
        router: Router,
        pricing: Pricing,
        *,
        budget: BudgetGuard | None = None,
        settings: BatchSettings | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.pricing = pricing
        self.budget = budget
        self.settings = settings or BatchSettings()
        #: This process's worker, when it runs one (see :meth:`attach`).
        self.worker: BatchWorker | None = None

    def attach(self, worker: BatchWorker) -> None:
        self.worker = worker

    # -- files ---------------------------------------------------------------------------------

    async def upload(
        self, caller: Principal, *, filename: str, purpose: str, content: bytes
    ) -> FileRecord:
        if purpose != "batch":
            raise errors.BadRequestError(
                f"Invalid value for 'purpose': {purpose!r}. This gateway stores files for "
                "batches only: purpose must be 'batch'.",
                param="purpose",
                code="invalid_value",
            )
        if len(content) > self.settings.max_file_bytes:
            raise errors.BadRequestError(
                f"the file is larger than {self.settings.max_file_bytes:,} bytes",
                status=413,
                param="file",
                code="file_too_large",
            )
        if not content.strip():
            raise errors.BadRequestError("the file is empty", param="file", code="empty_file")
        return await self.store.add_file(
            key_id=caller.key_id, purpose=purpose, filename=filename, content=content
        )

    async def file(self, caller: Principal, file_id: str) -> FileRecord:
        record = await self.store.file(file_id)
        if record is None or not _visible(caller, record.key_id):
            raise errors.NotFoundError(
                f"No such File object: {file_id}", param="file_id", code="file_not_found"
            )
        return record

    async def content(self, caller: Principal, file_id: str) -> bytes:
        await self.file(caller, file_id)
        content = await self.store.file_content(file_id)
        assert content is not None
        return content

    async def files(self, caller: Principal, purpose: str | None, limit: int) -> list[FileRecord]:
        return await self.store.files(
            key_id=caller.key_id, everyone=caller.is_admin, purpose=purpose, limit=limit
        )

    # -- batches -------------------------------------------------------------------------------

    async def create(
        self,
        caller: Principal,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: dict[str, Any] | None = None,
        mode: str | None = None,
    ) -> BatchRecord:
        source = await self.file(caller, input_file_id)
        if source.purpose != "batch":
            raise errors.BadRequestError(
                f"file {input_file_id} has purpose {source.purpose!r}; upload the input with "
                "purpose 'batch'",
                param="input_file_id",
            )
        if endpoint not in lines.ENDPOINTS:
            raise errors.BadRequestError(
                f"Invalid value for 'endpoint': {endpoint!r}; supported: "
                f"{', '.join(lines.ENDPOINTS)}",
                param="endpoint",
                code="invalid_value",
            )
        try:
            seconds = window_seconds(completion_window)
        except ValueError as exc:
            raise errors.BadRequestError(
                str(exc), param="completion_window", code="invalid_value"
            ) from None
        metadata = _metadata(metadata)
        mode = _mode(mode, metadata)
        content = await self.store.file_content(input_file_id) or b""
        known = set(self.router.names)
        parsed = await asyncio.to_thread(
            lines.parse_jsonl,
            content,
            endpoint=endpoint,
            known_model=known.__contains__,
            max_lines=self.settings.max_lines,
        )
        models = parsed.models
        draft = Draft(
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=completion_window,
            window_seconds=seconds,
            key_id=caller.key_id,
            team=caller.record.team if caller.record is not None else None,
            model=models[0] if len(models) == 1 else None,
            metadata=metadata,
            max_attempts=self.settings.max_attempts,
        )
        if parsed.errors:
            return await self.store.create(draft, [], parsed.errors)
        for model in models:
            caller.authorize(model, endpoint)
        if mode is None:
            native = bool(models) and all(prefers_native(self.router, m) for m in models)
            mode = "native" if native else "emulate"
        elif mode == "auto":
            mode = "native" if self._native_fits(models, endpoint, seconds) else "emulate"
        draft.mode = mode
        if mode == "native":
            self._check_native(models, endpoint)
        factor = NATIVE_PRICE if mode == "native" else 1.0
        cost = await asyncio.to_thread(
            estimate, self.router, self.pricing, endpoint, parsed.lines, price_factor=factor
        )
        draft.estimate_usd = cost.max_usd
        if self.budget is not None:
            await self.budget.check(caller.record, cost.max_usd, len(parsed.lines))
        record = await self.store.create(draft, parsed.lines)
        log.info(
            "batch %s: %d %s line(s), mode %s, estimate up to $%.4f",
            record.id,
            record.total,
            endpoint,
            mode,
            cost.max_usd,
        )
        if self.worker is not None:
            self.worker.kick()
        return record

    def _native_fits(self, models: list[str], endpoint: str, seconds: float) -> bool:
        """``auto``: native when one model's provider has a batch API for this endpoint and the
        window allows the provider's 24 hours."""
        if len(models) != 1 or seconds < NATIVE_WINDOW:
            return False
        dep = native_deployment(self.router, models[0])
        if dep is None:
            return False
        return not (endpoint == lines.EMBEDDINGS and dep.provider.type == "anthropic")

    def _check_native(self, models: list[str], endpoint: str) -> None:
        if len(models) != 1:
            raise errors.BadRequestError(
                "mode 'native' runs the batch as one provider batch, which takes one model; "
                f"this file uses {len(models)}: {', '.join(models)}",
                param="mode",
                code="native_unsupported",
            )
        dep = native_deployment(self.router, models[0])
        if dep is None:
            raise errors.BadRequestError(
                f"mode 'native' needs a model served by an openai or anthropic provider (their "
                f"batch APIs); {models[0]!r} is not",
                param="mode",
                code="native_unsupported",
            )
        if endpoint == lines.EMBEDDINGS and dep.provider.type == "anthropic":
            raise errors.BadRequestError(
                "Anthropic's batch API has no embeddings", param="mode", code="native_unsupported"
            )

    async def get(self, caller: Principal, batch_id: str) -> BatchRecord:
        record = await self.store.get(batch_id)
        if not _visible(caller, record.key_id):
            raise BatchNotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
        return record

    async def list(
        self, caller: Principal, *, after: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        if after is not None:
            await self.get(caller, after)
        return await self.store.list(
            key_id=caller.key_id, everyone=caller.is_admin, after=after, limit=limit
        )

    async def cancel(self, caller: Principal, batch_id: str) -> BatchRecord:
        await self.get(caller, batch_id)
        record = await self.store.cancel(batch_id)
        if self.worker is not None:
            self.worker.kick()
        return record


def _visible(caller: Principal, owner: str | None) -> bool:
    return caller.is_admin or (caller.key_id is not None and caller.key_id == owner)


def _metadata(metadata: Any) -> dict[str, Any] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_PAIRS:
        raise errors.BadRequestError(
            f"metadata must be an object of at most {MAX_METADATA_PAIRS} string pairs",
            param="metadata",
            code="invalid_value",
        )
    for key, value in metadata.items():
        if (
            not isinstance(value, str)
            or len(key) > MAX_METADATA_KEY
            or len(value) > MAX_METADATA_VALUE
        ):
            raise errors.BadRequestError(
                f"metadata.{key}: keys are strings of at most {MAX_METADATA_KEY} characters, "
                f"values strings of at most {MAX_METADATA_VALUE}",
                param=f"metadata.{key}",
                code="invalid_value",
            )
    return dict(metadata)


def _mode(mode: str | None, metadata: dict[str, Any] | None) -> str | None:
    """The mode asked for: the ``mode`` field, else ``metadata.mode`` (what the openai SDK can
    send without extra parameters); None lets the deployment's default decide. ``auto`` is
    resolved once the lines are known."""
    chosen = mode if mode is not None else (metadata or {}).get("mode")
    if chosen is None:
        return None
    if chosen not in MODES:
        raise errors.BadRequestError(
            f"mode must be one of {', '.join(MODES)}, not {chosen!r}",
            param="mode",
            code="invalid_value",
        )
    return str(chosen)
