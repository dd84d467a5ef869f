"""Samples shared by the toy-world tests (generated once per session: generation is deterministic)."""

from __future__ import annotations

import pytest

from openkontext.toyworld import CATEGORIES, FAMILIES, generate


def samples_by_family(split: str = "train", size=256, max_seeds: int = 400) -> dict[str, list]:
    """At least one sample of every edit family (searching seeds per category)."""
    found: dict[str, list] = {}
    for cat in CATEGORIES:
        missing = set(FAMILIES[cat])
        for seed in range(max_seeds):
            s = generate(seed, split=split, size=size, categories=[cat])
            found.setdefault(s.family, []).append(s)
            missing.discard(s.family)
            if not missing and seed >= 5:
                break
    return found


@pytest.fixture(scope="session")
def family_samples():
    return samples_by_family()


@pytest.fixture(scope="session")
def heldout_family_samples():
    return samples_by_family("heldout", size=(256, 192))
