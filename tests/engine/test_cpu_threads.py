"""Importing openkontext sets libgomp's spin count before torch loads, unless the user chose a wait policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = ("import os, openkontext, torch; "
         "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in __import__('sys').modules)")  # fmt: skip


def spin_count_seen(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()  # fmt: skip
    assert out[1] == "True"
    return out[0]


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "1000"),
    ({"GOMP_SPINCOUNT": "50000"}, "50000"),  # the user's own value
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "None"),  # the user's policy decides the spin count
])  # fmt: skip
def test_spin_count_is_throttled_unless_the_user_chose(env, expected):
    assert spin_count_seen(**env) == expected


def test_the_package_sets_it_before_any_of_its_modules_imports_torch():
    # The CLI's entry module is openkontext.cli: the package's __init__ runs first, and must not import torch itself.
    out = subprocess.run([sys.executable, "-c", "import openkontext, sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True, timeout=120).stdout  # fmt: skip
    assert out.strip() == "False"
