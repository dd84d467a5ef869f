"""Per-``safety_tolerance`` thresholds and the exact score → verdict mapping.

A check flags when ``score >= threshold[tolerance]``. Tolerance 0 is the strictest (lowest threshold), 6 the most
permissive; thresholds never decrease with tolerance. A threshold above the score's range (e.g. 1.01 for
probabilities) means the check never fires at that level. How the defaults were chosen: docs/moderation.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TOLERANCES = range(7)  # safety_tolerance 0..6

# NSFW probability from open_nsfw (image_classifier.py).
IMAGE_THRESHOLDS = (0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.97)
# Max cosine similarity to the unsafe-concept list (prompt_classifier.py).
PROMPT_THRESHOLDS = (0.53, 0.555, 0.575, 0.63, 0.70, 0.78, 0.88)
# Categories refused at every tolerance as strictly as at the default level 2: the prompt table, capped by these.
PROMPT_CATEGORY_CAPS = {"minors": (0.53, 0.555, 0.575, 0.575, 0.575, 0.575, 0.575)}


@dataclass(frozen=True)
class ThresholdTable:
    check: str  # what fires, for the reason text: "image classifier", "prompt classifier"
    thresholds: tuple[float, ...]

    def __post_init__(self):
        values = tuple(float(t) for t in self.thresholds)
        if len(values) != len(TOLERANCES):
            raise ValueError(f"{self.check}: need {len(TOLERANCES)} thresholds (tolerance 0..6), got {len(values)}")
        if any(b < a for a, b in zip(values, values[1:])):
            raise ValueError(f"{self.check}: thresholds must not decrease from tolerance 0 to 6: {values}")
        object.__setattr__(self, "thresholds", values)

    def threshold(self, tolerance: int) -> float:
        return self.thresholds[check_tolerance(tolerance)]

    def flags(self, score: float, tolerance: int) -> bool:
        return score >= self.threshold(tolerance)


def check_tolerance(tolerance: int) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance not in TOLERANCES:
        raise ValueError(f"safety_tolerance must be an integer 0..6, got {tolerance!r}")
    return tolerance


def parse_thresholds(value: str | Sequence[float] | None) -> tuple[float, ...] | None:
    """``"0.4,0.5,..."`` (an environment variable) or a sequence → tuple; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part for part in (p.strip() for p in value.split(",")) if part]
        if not value:
            return None
    return tuple(float(v) for v in value)


def capped(table: ThresholdTable, cap: Sequence[float]) -> ThresholdTable:
    """``table`` with each threshold lowered to ``cap`` where the cap is stricter."""
    return ThresholdTable(table.check, tuple(min(t, c) for t, c in zip(table.thresholds, cap)))


IMAGE = ThresholdTable("image classifier", IMAGE_THRESHOLDS)
PROMPT = ThresholdTable("prompt classifier", PROMPT_THRESHOLDS)
