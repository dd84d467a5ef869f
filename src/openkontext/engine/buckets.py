"""Resolution buckets: the output sizes a model is run at, one per aspect ratio.

Kontext models are trained at a fixed pixel area in a set of aspect ratios. An input image is mapped to the bucket
whose aspect ratio is nearest its own, so a 4:3 photo gives a 4:3 result, never a silently square one.
"""

from __future__ import annotations

import math
from fractions import Fraction

# The 17 resolutions FLUX.1 Kontext [dev] was trained at (diffusers' PREFERRED_KONTEXT_RESOLUTIONS), about 1 MP.
FLUX_KONTEXT_BUCKETS: tuple[tuple[int, int], ...] = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104),
    (1024, 1024),
    (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688), (1568, 672),
)  # fmt: skip

# Widest and tallest aspect ratios served (BFL's aspect_ratio range: 21:9 to 9:21).
MAX_ASPECT = 21 / 9
MIN_ASPECT = 9 / 21


def make_buckets(side: int, multiple: int = 16) -> tuple[tuple[int, int], ...]:
    """Buckets of about ``side``² pixels (±20%), from 9:21 to 21:9, each dimension a multiple of ``multiple``.

    One bucket per width: the height that brings the area closest to ``side``².
    """
    area = side * side
    buckets = []
    for width in range(multiple, 4 * side + 1, multiple):
        height = max(multiple, round(area / width / multiple) * multiple)
        if MIN_ASPECT <= width / height <= MAX_ASPECT and 0.8 <= width * height / area <= 1.2:
            buckets.append((width, height))
    buckets += [(height, width) for width, height in buckets]  # as many portrait buckets as landscape ones
    return tuple(sorted(set(buckets), key=lambda wh: (wh[0] / wh[1], wh[0])))


def nearest_bucket(width: int, height: int, buckets: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    # Distance in log aspect: 2:1 is as far from 1:1 as 1:2 is, so a transposed input gets the transposed bucket.
    log_aspect = math.log(width / height)
    return min(buckets, key=lambda wh: (abs(math.log(wh[0] / wh[1]) - log_aspect), -wh[0] * wh[1]))


def parse_aspect_ratio(text: str) -> float:
    """'16:9' → 16/9, accepted from 21:9 to 9:21; raises ValueError with a message for clients."""
    try:
        width_part, height_part = text.split(":")
        ratio = Fraction(int(width_part), int(height_part))
    except (ValueError, ZeroDivisionError):
        raise ValueError("aspect_ratio must look like '16:9'") from None
    if not MIN_ASPECT - 1e-9 <= ratio <= MAX_ASPECT + 1e-9:
        raise ValueError("aspect_ratio must be between 21:9 and 9:21")
    return float(ratio)
