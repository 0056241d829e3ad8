"""The worker beyond the happy path: budgets enforced line by line while a batch runs, and
embeddings batches."""

from __future__ import annotations

from pathlib import Path

import orjson
from tests.batch.conftest import Running, chat_lines, jsonl, read_jsonl

from aiwire.batch import lines
from aiwire.batch.budget import BudgetGuard
from aiwire.batch.execute import LineExecutor
from aiwire.batch.runner import BatchWorker, WorkerSettings
from aiwire.batch.store import BatchStore, Draft
from aiwire.config import simulator_config
from aiwire.limits import MemoryState
from aiwire.limits.admission import Admission, BudgetBook
from aiwire.limits.pricing import CatalogPricing
from aiwire.router import Router
from aiwire.simulator import SimulatorServer
from aiwire.store import Database
from aiwire.store.budgets import BudgetStore


async def test_a_budget_exhausted_while_a_batch_runs_refuses_its_remaining_lines(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path}/aiwire.db")
    router = Router.from_config(simulator_config(simulator.url))
    try:
        await db.migrate()
        budgets = BudgetStore(db)
        # gpt-4o-mini: a line reserves ~$0.000015 (its input plus 20 output tokens): room for
        # the first line, not for a second one on top of what the first spent
        await budgets.set("global", "", "total", 0.000025, actor="test")
        store = BatchStore(db)
        data = jsonl(chat_lines(4, "sim-gpt", max_tokens=20))
        parsed = lines.parse_jsonl(data, endpoint=lines.CHAT, known_model=lambda m: True)
        source = await store.add_file(key_id=None, purpose="batch", filename="in", content=data)
        draft = Draft(
            endpoint=lines.CHAT,
            input_file_id=source.id,
            completion_window="1h",
            window_seconds=3600,
        )
        batch = await store.create(draft, parsed.lines)
        pricing = CatalogPricing(router.catalog)  # type: ignore[arg-type]
        admitted_before = simulator.app.sim.limiter.counts[("gpt-4o-mini", "admitted")]
        guard = BudgetGuard(Admission(MemoryState(), BudgetBook(budgets)), budgets, router, pricing)
        worker = BatchWorker(
            store,
            LineExecutor(router, pricing, clock=store.now),
            settings=WorkerSettings(max_concurrency=1, poll_interval=0.1),
            budget=guard,
        )
        done = await worker.run(batch.id)
        assert done.status == "completed"
        assert done.counts.succeeded >= 1 and done.counts.errored >= 1
        assert done.counts.succeeded + done.counts.errored == 4
        assert done.counts.cost_usd <= 0.000025
        assert done.error_file_id is not None
        refused = read_jsonl(await store.file_content(done.error_file_id) or b"")
        for line in refused:
            assert line["response"]["status_code"] == 429
            error = line["response"]["body"]["error"]
            assert error["code"] == "budget_exceeded" and "global total budget" in error["message"]
        sent = simulator.app.sim.limiter.counts[("gpt-4o-mini", "admitted")] - admitted_before
        assert sent == done.counts.succeeded  # refused lines never reached the provider
        async with db.engine.connect() as conn:
            from sqlalchemy import text

            logged = (await conn.execute(text("SELECT count(*) FROM request_log"))).scalar()
        assert logged == done.counts.succeeded
    finally:
        await router.aclose()
        await db.aclose()


def test_an_embeddings_batch_answers_in_openais_embeddings_shape(gw: Running) -> None:
    items = [
        {
            "custom_id": f"doc-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "sim-embed", "input": [f"document {i}", "shared words"]},
        }
        for i in range(3)
    ]
    created = gw.create(gw.upload(jsonl(items)), endpoint="/v1/embeddings")
    assert created.status_code == 200, created.text
    done = gw.wait(created.json()["id"], ("completed",))
    assert done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    for line in gw.content(done["output_file_id"]):
        body = line["response"]["body"]
        assert body["object"] == "list" and len(body["data"]) == 2
        assert len(body["data"][0]["embedding"]) == 256
        assert body["usage"]["prompt_tokens"] > 0
    assert done["cost_usd"] > 0
    wrong = gw.create(gw.upload(jsonl(items)))  # lines for /v1/embeddings, batch for chat
    assert wrong.json()["status"] == "failed"
    assert {e["code"] for e in wrong.json()["errors"]["data"]} == {"mismatched_endpoint"}
    assert orjson.loads(orjson.dumps(done))["usage"]["output_tokens"] == 0
