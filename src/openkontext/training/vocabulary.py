"""The word vocabulary of the default model's tokenizer (engine/word_tokenizer.py), collected from the toy world's
training prompts.

Only the training split is read, so a phrasing or word the benchmark holds out is spelled in characters exactly as a
user's unknown word would be; quoted strings (the words written on signs) are left out, since they reach the model
as characters and as the glyph strip. The collected list is committed (``prompt_words.txt``): it is part of the
architecture, like any tokenizer's vocabulary, and ``python -m openkontext.training.vocabulary`` rewrites it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from openkontext.engine.conditioning import without_quotes
from openkontext.engine.word_tokenizer import split_words

WORDS_FILE = Path(__file__).with_name("prompt_words.txt")
SAMPLES = 40_000
MIN_COUNT = 3


def training_prompts(samples: int, start_seed: int = 0):
    """Every prompt of ``samples`` training-split samples (all of an iterative chain's turns)."""
    from openkontext.toyworld import generate

    for seed in range(start_seed, start_seed + samples):
        sample = generate(seed, split="train", size=64)
        yield sample.prompt
        yield from (turn.prompt for turn in sample.turns or ())


def collect_words(samples: int = SAMPLES, min_count: int = MIN_COUNT) -> list[str]:
    """The words of the training prompts outside quotes seen at least ``min_count`` times, most frequent first."""
    counts = Counter(word for prompt in training_prompts(samples) for word in split_words(without_quotes(prompt)))
    return [word for word, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= min_count]


def prompt_words() -> tuple[str, ...]:
    return tuple(WORDS_FILE.read_text().split())


if __name__ == "__main__":
    WORDS_FILE.write_text("\n".join(collect_words()) + "\n")
    print(f"{len(prompt_words())} words -> {WORDS_FILE}")
