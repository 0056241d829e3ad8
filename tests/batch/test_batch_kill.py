"""``aiwire batch run`` killed with SIGKILL at 5 random points and run again until done: every
custom_id is answered exactly once, and the provider saw no more calls than lines plus the
re-dispatches of lines that were in flight at a kill."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.batch.conftest import chat_lines, jsonl, read_jsonl

from aiwire.simulator import SimulatorConfig, SimulatorServer

LINES = 200
CONCURRENCY = 4
KILLS = 5


def _config(path: Path, url: str) -> Path:
    path.write_text(
        f"""
providers:
  claude: {{type: anthropic, base_url: "{url}", api_key: env:AIWIRE_TEST_SIM_KEY}}
models:
  - {{name: sim-claude, provider: claude, model: claude-sonnet-4-5}}
router: {{retries: 0}}
"""
    )
    return path


def _succeeded(state: Path) -> int:
    """Lines the run has recorded as answered (0 while its store does not exist yet)."""
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute(
                "SELECT count(*) FROM batch_lines WHERE state = 'succeeded'"
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def test_sigkill_at_five_random_points_then_resume_answers_each_line_once(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(chat_lines(LINES, "sim-claude")))
    output, state = tmp_path / "out.jsonl", tmp_path / "out.jsonl.state.db"
    with SimulatorServer(SimulatorConfig(latency_ms=40)) as sim:
        config = _config(tmp_path / "aiwire.yaml", sim.url)
        command = [
            sys.executable,
            "-m",
            "aiwire.cli",
            "batch",
            "run",
            str(source),
            "-o",
            str(output),
            "-c",
            str(config),
            "-j",
            str(CONCURRENCY),
            "--no-progress",
        ]
        env = {**os.environ, "AIWIRE_TEST_SIM_KEY": "sim-key"}
        kill_points = []
        for _ in range(KILLS):
            before = _succeeded(state)
            run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            # Kill it while it is working: once it has answered a few more lines, at a random
            # moment of the next half second.
            while _succeeded(state) < before + 3:
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, f"no progress (seed {seed})"
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.5))
            os.kill(run.pid, signal.SIGKILL)
            run.wait()
            kill_points.append(_succeeded(state))
            assert run.returncode == -signal.SIGKILL
        assert kill_points[-1] < LINES, f"the run finished before the last kill (seed {seed})"
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
        assert "Resumed and finished" in final.stdout
        admitted = sim.app.sim.limiter.counts[("claude-sonnet-4-5", "admitted")]

    answers = read_jsonl(output.read_bytes())
    ids = Counter(a["custom_id"] for a in answers)
    assert set(ids) == {f"req-{i}" for i in range(LINES)}, f"seed {seed}"
    assert max(ids.values()) == 1, f"duplicated answers (seed {seed})"
    assert all(a["response"]["status_code"] == 200 for a in answers)
    assert not (tmp_path / "out.errors.jsonl").exists()
    with sqlite3.connect(state) as db:
        dispatched = db.execute("SELECT sum(attempts) FROM batch_lines").fetchone()[0]
        logged = db.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM request_log "
            "WHERE endpoint = '/v1/batches'"
        ).fetchone()
    redispatched = dispatched - LINES
    # Only lines in flight at a kill are sent again: at most the concurrency per kill.
    assert 0 <= redispatched <= KILLS * CONCURRENCY, f"seed {seed}"
    # The provider answered no more calls than lines plus those re-dispatches.
    assert LINES <= admitted <= LINES + redispatched, (admitted, redispatched, seed)
    # Exactly one log row per recorded call (calls lost with a killed process left none).
    assert logged == (LINES, LINES)


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(chat_lines(80, "sim-claude")))
    output, state = tmp_path / "out.jsonl", tmp_path / "out.jsonl.state.db"
    with SimulatorServer(SimulatorConfig(latency_ms=40)) as sim:
        config = _config(tmp_path / "aiwire.yaml", sim.url)
        command = [
            sys.executable, "-m", "aiwire.cli", "batch", "run", str(source), "-o", str(output),
            "-c", str(config), "-j", "2", "--no-progress",
        ]  # fmt: skip
        env = {**os.environ, "AIWIRE_TEST_SIM_KEY": "sim-key"}
        run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while _succeeded(state) < 5:
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.01)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 130, err
        assert b"run the same command again to resume" in err
        with sqlite3.connect(state) as db:
            in_flight = db.execute(
                "SELECT count(*) FROM batch_lines WHERE state = 'in_flight'"
            ).fetchone()[0]
        assert in_flight == 0  # the lines it held were finished or handed back
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert final.returncode == 0, final.stderr
        assert sim.app.sim.limiter.counts[("claude-sonnet-4-5", "admitted")] == 80
    assert len(read_jsonl(output.read_bytes())) == 80
