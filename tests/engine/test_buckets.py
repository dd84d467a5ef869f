"""Resolution buckets: the sizes a model runs at, and the choice of one for an input's aspect ratio."""

from __future__ import annotations

import math

import pytest

from openkontext.engine.buckets import (
    FLUX_KONTEXT_BUCKETS,
    MAX_ASPECT,
    MIN_ASPECT,
    make_buckets,
    nearest_bucket,
    parse_aspect_ratio,
)

SIDES = [64, 256, 512, 1024]


def aspect(bucket: tuple[int, int]) -> float:
    return bucket[0] / bucket[1]


@pytest.mark.parametrize("side", SIDES)
def test_bucket_dimensions_are_multiples_of_16(side):
    buckets = make_buckets(side)
    assert buckets
    assert all(w % 16 == 0 and h % 16 == 0 and w > 0 and h > 0 for w, h in buckets)


def test_buckets_of_256_have_about_the_native_area():
    buckets = make_buckets(256)
    assert len(buckets) >= 9  # a useful set of aspect ratios, not a handful
    for w, h in buckets:
        assert abs(w * h / 256**2 - 1) <= 0.10, (w, h)


@pytest.mark.parametrize("side", [256, 512, 1024])
def test_buckets_span_9_21_to_21_9_sorted(side):
    buckets = make_buckets(side)
    aspects = [aspect(b) for b in buckets]
    assert aspects == sorted(aspects)
    assert len(set(buckets)) == len(buckets)
    assert all(MIN_ASPECT - 1e-9 <= a <= MAX_ASPECT + 1e-9 for a in aspects)
    # Each end reaches the served range's end as closely as 16-pixel steps allow at this area.
    tolerance = 0.1 if side == 256 else 0.03
    assert aspects[0] <= MIN_ASPECT * (1 + tolerance)
    assert aspects[-1] >= MAX_ASPECT / (1 + tolerance)
    assert (side, side) in buckets


def test_buckets_of_1024_match_flux_kontext_range():
    buckets = make_buckets(1024)
    assert buckets[0] == (672, 1568) and buckets[-1] == (1568, 672)
    assert set(FLUX_KONTEXT_BUCKETS) & set(buckets) >= {(1024, 1024), (672, 1568), (1568, 672)}


@pytest.mark.parametrize("side", SIDES)
def test_buckets_are_the_same_for_portrait_and_landscape(side):
    buckets = make_buckets(side)
    assert {(h, w) for w, h in buckets} == set(buckets)


@pytest.mark.parametrize("buckets", [make_buckets(256), FLUX_KONTEXT_BUCKETS], ids=["256", "flux"])
@pytest.mark.parametrize(("w", "h"), [(4, 3), (3, 2), (16, 9), (1, 1), (2, 1), (21, 9), (5, 4)])
def test_nearest_bucket_keeps_the_aspect(buckets, w, h):
    for width, height in ((w * 300, h * 300), (h * 300, w * 300)):  # landscape and portrait
        bucket = nearest_bucket(width, height, buckets)
        assert bucket in buckets
        assert abs(math.log(aspect(bucket) / (width / height))) <= math.log(1.10), (width, height, bucket)
        if width > height:
            assert bucket[0] > bucket[1]
        elif width < height:
            assert bucket[0] < bucket[1]
        else:
            assert bucket[0] == bucket[1]


def test_nearest_bucket_is_the_closest_aspect():
    buckets = make_buckets(256)
    for width, height in [(4000, 3000), (1920, 1080), (1080, 1920), (640, 480), (800, 2000)]:
        target = math.log(width / height)
        chosen = nearest_bucket(width, height, buckets)
        best = min(abs(math.log(aspect(b)) - target) for b in buckets)
        assert abs(math.log(aspect(chosen)) - target) == pytest.approx(best)


@pytest.mark.parametrize("side", [64, 256, 1024])
def test_transposed_input_gets_the_transposed_bucket(side):
    buckets = make_buckets(side)
    for width in range(20, 2000, 37):
        for height in range(20, 2000, 41):
            assert nearest_bucket(height, width, buckets) == nearest_bucket(width, height, buckets)[::-1]


def test_extreme_inputs_get_the_extreme_buckets():
    buckets = make_buckets(256)
    assert nearest_bucket(10_000, 100, buckets) == buckets[-1]
    assert nearest_bucket(100, 10_000, buckets) == buckets[0]
    assert nearest_bucket(1, 1, buckets) == (256, 256)


def test_tiny_model_buckets_give_exact_2_to_1_both_ways():
    buckets = make_buckets(64)
    assert nearest_bucket(200, 100, buckets) == (96, 48)
    assert nearest_bucket(100, 200, buckets) == (48, 96)


@pytest.mark.parametrize(
    ("text", "expected"), [("16:9", 16 / 9), ("21:9", 21 / 9), ("9:21", 9 / 21), ("1:1", 1.0), ("4:3", 4 / 3)]
)
def test_parse_aspect_ratio_accepts(text, expected):
    assert parse_aspect_ratio(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["22:9", "9:22", "10:1", "1:10", "0:1"])
def test_parse_aspect_ratio_rejects_out_of_range(text):
    with pytest.raises(ValueError, match="between 21:9 and 9:21"):
        parse_aspect_ratio(text)


@pytest.mark.parametrize("text", ["abc", "1:0", "0:0", "16", "16:9:1", "1.5:1", "", ":", "16/9"])
def test_parse_aspect_ratio_rejects_malformed(text):
    with pytest.raises(ValueError, match="look like '16:9'"):
        parse_aspect_ratio(text)
