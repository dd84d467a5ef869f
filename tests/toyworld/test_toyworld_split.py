"""The held-out split is disjoint from training: seeds, words, characters and phrasings."""

from __future__ import annotations

import re

from openkontext.toyworld import generate
from openkontext.toyworld.characters import Identity
from openkontext.toyworld.prompts import TEMPLATES, phrasings
from openkontext.toyworld.split import is_heldout_value
from openkontext.toyworld.text import vocabulary, words_of_split


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile("^" + "(.+?)".join(re.escape(p) for p in parts) + "$", re.IGNORECASE)


def _words(sample) -> set[str]:
    metas = [sample.meta] + [t.meta for t in sample.turns]
    out = set()
    for m in metas:
        out |= {m.get("old_word"), m.get("new_word")}
        for it in m.get("items", []):
            if it.get("type") == "sign":
                out.add(it.get("word"))
    for key in ("before", "after"):
        for it in (sample.meta.get(key) or {}).get("items", []):
            if it["type"] == "sign":
                out.add(it["word"])
    return out - {None}


def _identities(sample) -> set[str]:
    out = set()
    for key in ("before", "after"):
        for it in (sample.meta.get(key) or {}).get("items", []):
            if it["type"] == "character":
                out.add(it["identity"])
    return out


def test_vocabulary_is_large_and_split():
    vocab = vocabulary()
    assert len(vocab) > 4000
    train, held = set(words_of_split("train")), set(words_of_split("heldout"))
    assert train.isdisjoint(held) and train | held == set(vocab)
    assert 0.05 < len(held) / len(vocab) < 0.15


def test_every_family_has_train_and_heldout_phrasings():
    for family, templates in TEMPLATES.items():
        assert len(templates) >= 4, family
        train, held = phrasings(family, "train"), phrasings(family, "heldout")
        assert train and held and set(train).isdisjoint(held)


def _check_split(split: str, n: int) -> None:
    other = "train" if split == "heldout" else "heldout"
    samples = [generate(seed, split=split, categories=[c]) for c in ("text", "iterative", "text_to_image",
                                                                   "character_reference", "local") for seed in range(n)]
    n_words = n_ids = 0
    for s in samples:
        for w in _words(s):
            n_words += 1
            assert is_heldout_value(w) == (split == "heldout"), (w, s.meta["seed"])
        for ident in _identities(s):
            n_ids += 1
            assert Identity.from_id(ident).split == split
        # an iterative sample's own prompt is its first turn's
        prompts = [t.prompt for t in s.turns] if s.turns else [s.prompt]
        metas = [t.meta for t in s.turns] if s.turns else [s.meta]
        for prompt, meta in zip(prompts, metas):
            fam = meta["family"]
            assert any(_template_regex(t).match(prompt) for t in phrasings(fam, split)), prompt
            assert not any(_template_regex(t).match(prompt) for t in phrasings(fam, other)), prompt
    assert n_words > 20 and n_ids > 20


def test_train_never_sees_heldout_material():
    _check_split("train", 25)


def test_heldout_uses_only_heldout_material():
    _check_split("heldout", 25)


def test_seed_streams_are_disjoint():
    for seed in range(10):
        a, b = generate(seed, split="train"), generate(seed, split="heldout")
        assert a.target.tobytes() != b.target.tobytes()
