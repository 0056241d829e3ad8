"""The batch benchmark (bench/batch.py), small: a batch 11 % larger than a provider's per-minute
limit finishes at the pace the limit allows, with no 429 and one log row per line. (The full
run - 10 000 lines at RPM 1 200 within 5 % of the theoretical minimum - is in
bench/RESULTS.md.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aiwire.limits.pacing import SAFETY

BENCH = Path(__file__).resolve().parents[2] / "bench" / "batch.py"


def test_a_batch_over_the_rate_limit_runs_at_the_limits_pace() -> None:
    lines, rpm = 400, 360
    result = subprocess.run(
        [sys.executable, str(BENCH), "--lines", str(lines), "--rpm", str(rpm), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(result.stdout)
    assert data["status"] == "completed" and data["answered"] == lines
    assert data["upstream_429"] == 0 and data["request_log_rows"] == lines
    # No faster than the provider allows (its bucket: 360 at once, then 6 a second) ...
    minimum = (lines - rpm) * 60 / rpm
    assert data["theoretical_minimum"] == pytest.approx(minimum, abs=0.01)
    assert data["seconds"] >= minimum
    # ... and no slower than pacing's target (98 % of the limit) plus 5 % and the start-up
    # (storing and pricing the lines, loading the tokenizer: ~2 s on a shared machine).
    paced = (lines - rpm * SAFETY) * 60 / (rpm * SAFETY)
    assert data["seconds"] <= paced * 1.05 + 3.0, data
