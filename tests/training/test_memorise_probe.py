"""scripts/memorise_probe.py on the tiny-glyph preset: it trains on one category's probe cases and the probe's error
on those very cases falls — the diagnostic must be able to show a model fitting what it trains on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from openkontext.training import preset
from openkontext.training.checkpoint import write_config

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "memorise_probe.py"


def test_the_probe_error_on_the_trained_cases_falls(tmp_path):
    write_config(tmp_path, preset("tiny-glyph"))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--run", str(tmp_path), "--category", "local", "--steps", "30", "--every", "15",
         "--from", "none", "--lr", "3e-3"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    changed = [float(m) for m in re.findall(r"changed (\d+\.\d+) /", done.stdout)]
    assert len(changed) == 3, done.stdout  # steps 0, 15, 30
    assert changed[-1] < 0.7 * changed[0], done.stdout
    assert (tmp_path / "probe.pt").is_file()  # the encoded cases are cached in the run folder, as the loop does
