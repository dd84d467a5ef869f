"""The train / held-out split.

Held-out material is never produced by ``split="train"``:

- seeds: a sample is drawn from the random stream named ``"<split>:<seed>"``, so the two splits share no stream;
- words: a vocabulary word (or random letter string) is held out when ``stable_hash(word) % 10 == 0``;
- characters: an identity (its attribute tuple) is held out when ``stable_hash(identity) % 10 == 0``;
- phrasings: every fourth paraphrase of each instruction family (index % 4 == 3) is held out.

The held-out split uses *only* held-out words, characters and phrasings, so the benchmark measures generalisation.
"""

from __future__ import annotations

import hashlib
import random

SPLITS = ("train", "heldout")
HELDOUT_MODULUS = 10
PHRASING_PERIOD = 4


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return split


def stable_hash(value: object) -> int:
    """A hash that is the same in every process and Python version (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(repr(value).encode(), digest_size=8).digest(), "big")


def is_heldout_value(value: object) -> bool:
    return stable_hash(value) % HELDOUT_MODULUS == 0


def is_heldout_phrasing(index: int) -> bool:
    return index % PHRASING_PERIOD == PHRASING_PERIOD - 1


def rng_for(seed: int, split: str) -> random.Random:
    """The sample's random stream; string seeding of ``random.Random`` is deterministic across processes."""
    check_split(split)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, not {seed!r}")
    return random.Random(f"{split}:{seed}")
