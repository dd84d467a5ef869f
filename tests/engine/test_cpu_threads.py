"""Importing openkontext sets libgomp's spin count, without importing torch itself (libgomp reads the setting when
torch loads), unless the user chose a spin count or wait policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import os, sys, openkontext; print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "1000"),
    ({"GOMP_SPINCOUNT": "50000"}, "50000"),  # the user's own value
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "None"),  # the user's policy decides the spin count
])  # fmt: skip
def test_spin_count_is_set_before_torch_loads_unless_the_user_chose(env, expected):
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()  # fmt: skip
    assert out == [expected, "False"]  # set, and torch not yet loaded: the CLI's modules import it after this
