"""Sizes as the command line and the settings write them: one parser for the toy world, the quality benchmark, the
GPU benchmark and the warm-up setting."""

import pytest

from openkontext.sizes import parse_size, parse_sizes


def test_parse_size():
    assert parse_size("1024x768") == (1024, 768)
    assert parse_size(" 256X192 ") == (256, 192)
    assert parse_size("256", square=True) == (256, 256)
    for bad in ("256", "big", "1x2x3", "x64"):
        with pytest.raises(ValueError, match="look like 1024x1024"):
            parse_size(bad)


def test_parse_sizes():
    assert parse_sizes("1024x1024, 1184x880,") == [(1024, 1024), (1184, 880)]
    assert parse_sizes("") == []
