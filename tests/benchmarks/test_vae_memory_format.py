"""benchmarks/vae_memory_format.py on the tiny model, run as a user runs it (a subprocess): one row per precision,
and in fp32 the two memory formats give the same latents and pixels up to rounding. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vae_memory_format.py"


def test_the_table_compares_both_formats_in_every_precision():
    done = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--batch", "2"], capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| precision")}
    assert list(rows) == ["fp32", "bf16 autocast", "bf16 weights"]
    for cells in rows.values():
        assert len(cells) == 8 and all(float(c.rstrip("x")) > 0 for c in cells[:6])
    assert float(rows["fp32"][6]) < 1e-3 and float(rows["fp32"][7]) < 1e-3  # fp32: rounding only (bf16: ~0.03)
