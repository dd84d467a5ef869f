"""Moderation by ``safety_tolerance`` (0 = strictest … 6 = most permissive).

Prompts are checked against the operator's blocklist (whole words, case-insensitive) before a job is queued: a hit
makes the task ``Request Moderated`` at every tolerance level, since it is the operator's own policy. Image
classifiers for inputs and outputs plug in through ``check_image``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    reasons: list[str] = field(default_factory=list)

    @classmethod
    def ok(cls) -> Verdict:
        return cls(False)


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


class Moderator:
    def __init__(self, blocked_terms: list[str]):
        terms = [_normalise(term).strip() for term in blocked_terms if term.strip()]
        self._blocklist = (
            re.compile(r"(?<!\w)(" + "|".join(re.escape(term) for term in terms) + r")(?!\w)") if terms else None
        )

    def check_prompt(self, prompt: str, tolerance: int) -> Verdict:
        if self._blocklist is not None and self._blocklist.search(_normalise(prompt)):
            return Verdict(True, ["prompt contains a term blocked by the operator"])
        return Verdict.ok()

    def check_image(self, image: Image.Image, tolerance: int) -> Verdict:
        return Verdict.ok()
