"""Batch benchmark: a batch far larger than a provider's rate limit, run by ``aiwire batch run``'s
engine against the simulator.

    .venv/bin/python bench/batch.py [--lines 10000] [--rpm 1200] [--concurrency 64]
                                    [--model sim-gpt|sim-claude] [--json]

The simulator plays one deployment limited to ``--rpm`` requests per minute (a continuous-refill
bucket that starts full, like OpenAI's: ``rpm`` requests at once, then ``rpm/60`` per second),
and the deployment is configured with the same ``rpm``. The batch is run to its end exactly as
``aiwire batch run`` does (SQLite state, the router's pacing, ``--concurrency`` lines in flight).

Reported: the wall time from the start of the run (validation, estimate and storing the lines
included) to the last output line written, against the theoretical minimum
``(lines - rpm) * 60 / rpm`` (the provider cannot answer sooner); the upstream calls the
simulator refused with 429; and the request-log rows written. Target (issue 6): 10 000 lines at
RPM 1 200 within 5 % of the theoretical minimum (440 s), with no 429 and one row per line.
The exit status is 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import orjson

from aiwire.batch.local import RunOptions, run_local
from aiwire.config import Config, DeploymentConfig, ProviderConfig, RouterConfig
from aiwire.secrets import Secret
from aiwire.simulator import SimulatorConfig, SimulatorServer
from aiwire.simulator.config import ModelLimit

UPSTREAM = {"sim-gpt": ("openai", "gpt-4o-mini"), "sim-claude": ("anthropic", "claude-sonnet-4-5")}


def theoretical_minimum(lines: int, rpm: int) -> float:
    """Seconds a provider bucket of ``rpm`` per minute, full at the start, needs for ``lines``."""
    return max(0, lines - rpm) * 60.0 / rpm


def config(url: str, model: str, rpm: int) -> Config:
    kind, upstream = UPSTREAM[model]
    base = f"{url}/v1" if kind == "openai" else url
    return Config(
        providers={"sim": ProviderConfig(type=kind, base_url=base, api_key=Secret("sim-key"))},
        models=[DeploymentConfig(name=model, provider="sim", model=upstream, rpm=rpm)],
        router=RouterConfig(retries=2),
    )


def write_input(path: Path, lines: int, model: str) -> None:
    with path.open("wb") as out:
        for i in range(lines):
            line = {
                "custom_id": f"ticket-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": model,
                    "messages": [{"role": "user", "content": f"Summarise ticket {i} in a line"}],
                    "max_tokens": 40,
                },
            }
            out.write(orjson.dumps(line) + b"\n")


def measure(lines: int, rpm: int, concurrency: int, model: str) -> dict[str, object]:
    _, upstream = UPSTREAM[model]
    limits = {upstream: ModelLimit(rpm=rpm)}
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimulatorServer(SimulatorConfig(limits=limits)) as sim,
    ):
        work = Path(tmp)
        source, output = work / "in.jsonl", work / "out.jsonl"
        write_input(source, lines, model)
        options = RunOptions(input=source, output=output, max_concurrency=concurrency)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        outcome = asyncio.run(run_local(config(sim.url, model, rpm), options))
        elapsed = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        answered = sum(1 for _ in output.open("rb"))
        with sqlite3.connect(options.state_path) as db:
            logged = db.execute("SELECT count(*) FROM request_log").fetchone()[0]
        counts = sim.app.sim.limiter.counts
        admitted, refused = counts[(upstream, "admitted")], counts[(upstream, "refused")]
    minimum = theoretical_minimum(lines, rpm)
    return {
        "lines": lines,
        "rpm": rpm,
        "concurrency": concurrency,
        "model": model,
        "status": outcome.batch.status,
        "answered": answered,
        "failed": outcome.batch.counts.failed,
        "seconds": round(elapsed, 2),
        "theoretical_minimum": round(minimum, 2),
        "over_minimum": round(elapsed / minimum - 1, 4) if minimum else None,
        "upstream_admitted": admitted,
        "upstream_429": refused,
        "request_log_rows": logged,
        "cpu_seconds": round(
            cpu_after.ru_utime + cpu_after.ru_stime - cpu.ru_utime - cpu.ru_stime, 2
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--rpm", type=int, default=1200)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--model", choices=sorted(UPSTREAM), default="sim-gpt")
    ap.add_argument("--target", type=float, default=0.05, help="allowed share over the minimum")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    result = measure(args.lines, args.rpm, args.concurrency, args.model)
    over = result["over_minimum"]
    ok = (
        result["status"] == "completed"
        and result["answered"] == args.lines
        and result["upstream_429"] == 0
        and result["request_log_rows"] == args.lines
        and (over is None or float(over) <= args.target)  # type: ignore[arg-type]
    )
    result["target_met"] = ok
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.lines:,} lines at RPM {args.rpm:,} ({args.model}, concurrency "
            f"{args.concurrency}): {result['seconds']} s vs theoretical minimum "
            f"{result['theoretical_minimum']} s ({100 * float(over or 0):+.1f} %); "
            f"{result['answered']:,} answered, {result['failed']} failed, "
            f"{result['upstream_429']} upstream 429, {result['request_log_rows']:,} log rows, "
            f"{result['cpu_seconds']} s CPU -> {'PASS' if ok else 'FAIL'}"
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
