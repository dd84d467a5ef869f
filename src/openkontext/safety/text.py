"""Text normalisation for moderation: undo the cheap tricks used to slip a word past a filter.

``normalise`` is what every check sees: NFKC (full-width letters, ligatures, super/subscripts → plain), invisible
format characters removed (zero-width spaces/joiners, soft hyphens, bidi controls), diacritics stripped
(``nüde`` → ``nude``), common Cyrillic/Greek look-alike letters mapped to Latin, case folded and whitespace
collapsed. ``deleet`` additionally maps digits/symbols used as letters (``s3x`` → ``sex``); the blocklist is matched
against both forms of the prompt, and each term in both its written and de-leeted form (``b0mb`` also stops ``bomb``).
"""

from __future__ import annotations

import re
import unicodedata

# Look-alike letters that NFKC leaves alone (they are different letters, not compatibility forms).
_HOMOGLYPHS = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
        "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h",
        # Greek (lower case: text is case-folded first)
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
        "υ": "u", "χ": "x", "ω": "w",
    }
)  # fmt: skip

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    # Format characters (Cf): zero-width space/joiners, soft hyphen, bidi overrides, word joiner, BOM ...
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    # Strip combining marks (diacritics), then recompose what is left.
    decomposed = unicodedata.normalize("NFKD", text)
    text = unicodedata.normalize("NFKC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))
    text = text.translate(_HOMOGLYPHS)
    return _SPACES.sub(" ", text).strip()


def deleet(normalised: str) -> str:
    """Digits and symbols read as letters, on text that is already ``normalise``-d."""
    return normalised.translate(_LEET)


class Blocklist:
    """The operator's terms, matched as whole words/phrases in the normalised prompt (and its de-leeted form).

    Inside a multi-word term any run of spaces, punctuation or underscores matches the gap between words, so
    ``forbidden thing`` also stops ``forbidden-thing`` and ``forbidden   thing``.
    """

    def __init__(self, terms: list[str] | tuple[str, ...]):
        self.terms = tuple(dict.fromkeys(t for t in (normalise(term) for term in terms) if t))
        if self.terms:
            variants = dict.fromkeys([*self.terms, *(deleet(term) for term in self.terms)])  # "b0mb" → also "bomb"
            alternatives = "|".join(r"[\W_]+".join(re.escape(word) for word in term.split(" ")) for term in variants)
            self._pattern: re.Pattern[str] | None = re.compile(r"(?<![^\W_])(?:" + alternatives + r")(?![^\W_])")
        else:
            self._pattern = None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def matches(self, prompt: str) -> bool:
        if self._pattern is None:
            return False
        text = normalise(prompt)
        return bool(self._pattern.search(text) or self._pattern.search(deleet(text)))
