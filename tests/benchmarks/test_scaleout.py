"""benchmarks/scaleout.py in a tiny configuration, run as a user runs it (a subprocess): the table and the JSON are
checked for shape and content so the script cannot rot. No timing is asserted: the 2-core test machine's timings
mean nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from postgres import postgres_bin

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scaleout.py"

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed")


def test_scaleout_benchmark_runs_and_reports_every_figure(tmp_path):
    out = tmp_path / "result.json"
    command = [sys.executable, str(SCRIPT), "--workers", "1,2", "--jobs", "4", "--steps", "2", "--requests", "10",
               "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads(out.read_text())
    throughput = report["throughput"]
    assert [row["workers"] for row in throughput] == [1, 2]
    for row in throughput:
        assert row["jobs"] == 4 and row["steps"] == 2
        assert row["seconds"] > 0 and row["jobs_per_s"] == pytest.approx(4 / row["seconds"], rel=0.01)
    assert throughput[0]["vs_first"] == 1.0
    stores = {row["store"]: row for row in report["store_overhead"]}
    assert set(stores) == {"SQLite", "PostgreSQL"}
    for row in stores.values():
        assert row["requests"] == 10
        for kind in ("submit", "get_result"):
            assert 0 < row[kind]["p50_ms"] <= row[kind]["p99_ms"]

    lines = done.stdout.splitlines()
    assert any(line.startswith("Throughput: tiny model, 4 edits x 2 steps") for line in lines)
    for count in (1, 2):
        assert any(line.split()[:1] == [str(count)] and line.endswith("x") for line in lines), count
    assert any(line.split()[:1] == ["SQLite"] for line in lines)
    assert any(line.split()[:1] == ["PostgreSQL"] for line in lines)
