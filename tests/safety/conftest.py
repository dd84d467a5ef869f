"""Safety fixtures: the real classifiers, loaded once per test session."""

from __future__ import annotations

import pytest

from openkontext.safety.moderation import ModerationConfig, Moderator


@pytest.fixture(scope="session")
def moderator() -> Moderator:
    """Full default moderation: blocklist + prompt classifier + image classifier, models preloaded."""
    return Moderator(ModerationConfig(blocked_terms=["contraband", "forbidden thing"]))


@pytest.fixture(scope="session")
def prompt_classifier(moderator):
    return moderator.prompt_classifier


@pytest.fixture(scope="session")
def image_classifier(moderator):
    return moderator.image_classifier


@pytest.fixture(scope="session")
def blocklist_only() -> Moderator:
    return Moderator(ModerationConfig(blocked_terms=["contraband", "forbidden thing", "b0mb"],
                                      prompt_classifier=False, image_classifier=False))  # fmt: skip
