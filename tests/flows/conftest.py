"""Flow fixtures: a migrated store (SQLite under tmp_path; PostgreSQL where asked), runners over
the simulator or a scripted model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.flows.flow_support import Destination
from tests.store.conftest import pg_databases, pg_server  # noqa: F401 - fixtures used here

from aiwire.config import simulator_config
from aiwire.flows.runner import FlowRunner
from aiwire.flows.store import FlowStore
from aiwire.router import Router
from aiwire.simulator import SimulatorServer
from aiwire.store.db import Database


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path}/state/aiwire.db")
    await db.migrate()
    yield db
    await db.aclose()


@pytest.fixture
def store(database: Database) -> FlowStore:
    return FlowStore(database)


@pytest.fixture
async def sim_router(simulator: SimulatorServer) -> AsyncIterator[Router]:
    router = Router.from_config(simulator_config(simulator.url, retries=0, backoff_base=0.0))
    yield router
    await router.aclose()


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
async def runner(store: FlowStore, sim_router: Router) -> AsyncIterator[FlowRunner]:
    r = FlowRunner(store, sim_router, sleep=_no_sleep)
    yield r
    await r.aclose()


@pytest.fixture
def destination() -> Iterator[Destination]:
    with Destination() as dest:
        yield dest


@pytest.fixture
def pg_url(pg_databases) -> str:  # noqa: F811 - the imported fixture
    """A fresh, empty PostgreSQL database for one test."""
    return str(pg_databases())
