"""The operator blocklist: whole words/phrases, any tolerance, through Unicode and spelling tricks."""

from __future__ import annotations

import pytest

from openkontext.safety.text import Blocklist, deleet, normalise
from openkontext.safety.thresholds import TOLERANCES


@pytest.mark.parametrize(
    "prompt",
    [
        "add some contraband to the table",
        "Add some CONTRABAND to the table",
        "contraband",
        "(contraband)",
        "contraband_boxes",  # underscore separates words
        "ｃｏｎｔｒａｂａｎｄ on the shelf",  # full-width (NFKC)
        "con\u200btra\u200dband",  # zero-width space / joiner
        "con\u00adtraband",  # soft hyphen
        "cöntrabänd",  # diacritics
        "c\u043entr\u0430band",  # Cyrillic о and а
        "c0ntr4band",  # digits for letters
        "a forbidden thing here",
        "a FORBIDDEN   thing",
        "a forbidden-thing",
        "forbidden\u00a0thing",  # no-break space
        "make a b0mb",  # a term written with a digit matches as written
        "make a bomb",  # ... and its plain spelling
    ],
)
def test_blocked_at_every_tolerance(blocklist_only, prompt):
    for tolerance in TOLERANCES:
        verdict = blocklist_only.check_prompt(prompt, tolerance)
        assert verdict.flagged, (prompt, tolerance)
        assert verdict.reasons == ["prompt contains a term blocked by the operator"]


@pytest.mark.parametrize(
    "prompt",
    ["a contrabandist's boat", "smuggled goods", "forbidden fruit", "a thing that is forbidden", "bombastic", ""],
)
def test_only_whole_words_are_blocked(blocklist_only, prompt):
    for tolerance in TOLERANCES:
        assert not blocklist_only.check_prompt(prompt, tolerance).flagged, (prompt, tolerance)


def test_terms_are_normalised_like_prompts():
    blocklist = Blocklist(["  CONTRABAND ", "ｆｏｏ", "", "   "])
    assert blocklist.terms == ("contraband", "foo")
    assert blocklist.matches("some foo") and blocklist.matches("Contraband!")
    assert not Blocklist([]) and not Blocklist([]).matches("anything")


def test_normalise_and_deleet():
    assert normalise("  Ｈｅｌｌｏ\u200b  Wörld\t\n") == "hello world"
    assert normalise("ﬁne") == "fine"  # ligature
    assert normalise("\u0420\u0430\u0440\u0430") == "papa"  # Cyrillic look-alikes
    assert deleet("s3x 4nd n00d") == "sex and nood"
