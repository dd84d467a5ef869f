"""The score → verdict mapping is exact at every threshold (pure logic, no models)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from openkontext.safety.moderation import ModerationConfig, Moderator, verdict_for
from openkontext.safety.thresholds import (
    IMAGE,
    PROMPT,
    PROMPT_CATEGORY_CAPS,
    TOLERANCES,
    ThresholdTable,
    capped,
    parse_thresholds,
)

MINORS = capped(PROMPT, PROMPT_CATEGORY_CAPS["minors"])
TABLES = [IMAGE, PROMPT, MINORS]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.check)
@pytest.mark.parametrize("tolerance", list(TOLERANCES))
def test_flagged_exactly_from_the_threshold_up(table, tolerance):
    threshold = table.threshold(tolerance)
    below = math.nextafter(threshold, -math.inf)
    assert verdict_for(threshold, tolerance, table).flagged
    assert verdict_for(math.nextafter(threshold, math.inf), tolerance, table).flagged
    assert verdict_for(1.0, tolerance, table).flagged
    assert not verdict_for(below, tolerance, table).flagged
    assert not verdict_for(0.0, tolerance, table).flagged
    assert verdict_for(below, tolerance, table).reasons == []


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.check)
def test_a_score_between_two_thresholds_is_flagged_only_at_the_stricter_levels(table):
    for tolerance in TOLERANCES[1:]:
        score = (table.threshold(tolerance - 1) + table.threshold(tolerance)) / 2
        flagged = [verdict_for(score, t, table).flagged for t in TOLERANCES]
        if table.threshold(tolerance - 1) < table.threshold(tolerance):
            assert flagged == [t < tolerance for t in TOLERANCES]


def test_documented_default_tables():
    # Also in docs/moderation.md: change both together (and rerun python -m openkontext.safety.calibrate).
    assert IMAGE.thresholds == (0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.97)
    assert PROMPT.thresholds == (0.53, 0.555, 0.575, 0.63, 0.70, 0.78, 0.88)
    assert MINORS.thresholds == (0.53, 0.555, 0.575, 0.575, 0.575, 0.575, 0.575)
    for table in (IMAGE, PROMPT):
        assert all(a < b for a, b in zip(table.thresholds, table.thresholds[1:]))


def test_category_verdicts_through_the_moderator():
    moderator = Moderator(ModerationConfig(prompt_classifier=False, image_classifier=False))
    for tolerance in TOLERANCES:
        for category, table in [("minors", MINORS), ("hate", PROMPT), (None, PROMPT)]:
            t = table.threshold(tolerance)
            assert moderator.prompt_verdict(t, tolerance, category).flagged
            assert not moderator.prompt_verdict(math.nextafter(t, -math.inf), tolerance, category).flagged
    # a lower-scoring category that reaches its (stricter) threshold still flags, and is the one reported
    scores = {"sexual content": 0.70, "minors": 0.60}
    mixed = SimpleNamespace(score=0.7, category="sexual content", by_category=scores)
    verdict = moderator.prompt_result_verdict(mixed, 6)
    assert verdict.flagged and verdict.reasons[0].endswith("(closest concept: minors)")
    hate = SimpleNamespace(score=0.7, category="hate", by_category={"hate": 0.7})
    assert not moderator.prompt_result_verdict(hate, 6).flagged


def test_reason_names_the_check_score_and_threshold():
    verdict = verdict_for(0.61234, 2, IMAGE, "open_nsfw NSFW probability")
    assert verdict.flagged
    assert verdict.reasons == [
        "image classifier: score 0.612 >= threshold 0.600 at safety_tolerance 2 (open_nsfw NSFW probability)"
    ]


@pytest.mark.parametrize("tolerance", [-1, 7, 2.0, "2", True, None])
def test_tolerance_outside_0_to_6_is_an_error(tolerance):
    with pytest.raises(ValueError):
        verdict_for(0.5, tolerance, IMAGE)


def test_tables_must_have_seven_non_decreasing_thresholds():
    with pytest.raises(ValueError):
        ThresholdTable("x", (0.1, 0.2))
    with pytest.raises(ValueError):
        ThresholdTable("x", (0.5, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95))
    ThresholdTable("x", (0.5,) * 7)  # equal is fine


def test_threshold_overrides_from_config_and_environment_strings():
    assert parse_thresholds("0.1, 0.2,0.3,0.4,0.5,0.6,0.7") == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    assert parse_thresholds("") is None and parse_thresholds(None) is None
    moderator = Moderator(ModerationConfig(prompt_classifier=False, image_classifier=False,
                                           image_thresholds="0.1,0.2,0.3,0.4,0.5,0.6,1.01",
                                           prompt_thresholds=[0.2] * 7))  # fmt: skip
    assert moderator.image_table.thresholds == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.01)
    assert moderator.image_verdict(0.25, 1).flagged and not moderator.image_verdict(0.25, 2).flagged
    assert not moderator.image_verdict(1.0, 6).flagged  # a threshold above 1 never fires
    assert moderator.prompt_verdict(0.2, 6, "hate").reasons[0].endswith("(closest concept: hate)")
    with pytest.raises(ValueError):
        Moderator(ModerationConfig(prompt_classifier=False, image_classifier=False, image_thresholds=[0.5] * 6))
