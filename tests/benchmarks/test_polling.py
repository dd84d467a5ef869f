"""benchmarks/polling.py in a tiny configuration, run as a user runs it (a subprocess) on both stores: every route's
line is printed with a positive rate and its ratio, so the script cannot rot. No timing is asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from postgres import postgres_bin

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "polling.py"
ROUTES = ["get_result (Ready task)", "get_result (queued task)", "/v1/tasks?limit=20", "SSE stream (Ready task)"]

pytestmark = [
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/install-system-deps.sh)"),
    pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed"),
]


def test_polling_benchmark_reports_every_route_on_both_stores():
    command = [sys.executable, str(SCRIPT), "--seconds", "1", "--connections", "4", "--tasks", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    lines = done.stdout.splitlines()
    assert lines[0] == "wrk -t2 -c4 -d1s, model tiny, 4 tasks in each store"
    assert re.fullmatch(r"bare FastAPI +\d+ req/s +1\.00x bare +\(before \d+, after \d+\)", lines[1])
    rows = [re.fullmatch(r"(sqlite|postgresql) +(.+?) +(\d+) req/s +([\d.]+)x bare", line) for line in lines[2:]]
    assert all(rows), lines
    assert [(row[1], row[2]) for row in rows] == [(store, route) for store in ("sqlite", "postgresql")
                                                  for route in ROUTES]  # fmt: skip
    assert all(int(row[3]) > 0 and float(row[4]) > 0 for row in rows)
