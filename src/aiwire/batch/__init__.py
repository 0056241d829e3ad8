"""Batches: many requests run as one job, resumable and rate-aware.

* :mod:`aiwire.batch.lines` - input lines (JSONL in OpenAI's format, or CSV with a template),
  validated up front, and output lines in OpenAI's format;
* :mod:`aiwire.batch.store` - files, batches and every line's durable state (SQLite or
  PostgreSQL; workers share lines through ``FOR UPDATE SKIP LOCKED``);
* :mod:`aiwire.batch.runner` - the worker: lines through the router under each deployment's
  pacing, leases, expiry, cancellation, output files;
* :mod:`aiwire.batch.native` - native mode: the provider's own batch API at its batch price;
* :mod:`aiwire.batch.service` - the operations behind ``/v1/files`` and ``/v1/batches``;
* :mod:`aiwire.batch.local` - ``aiwire batch run``: a batch on this machine, resumable.

Submodules are imported where used: the simulator needs only :mod:`aiwire.batch.multipart`.
"""
