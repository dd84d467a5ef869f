"""The word-level tokenizer (engine/word_tokenizer.py) and the vocabulary collected for it (training/vocabulary.py)."""

from __future__ import annotations

from openkontext.engine.conditioning import without_quotes
from openkontext.engine.word_tokenizer import SPECIAL_TOKENS, split_words, word_tokenizer
from openkontext.training.vocabulary import collect_words, prompt_words

WORDS = ["make", "the", "balloon", "yellow", "change", "to"]


def _tokens(tokenizer, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)


def test_known_words_are_one_token_and_unknown_ones_are_spelled():
    tokenizer = word_tokenizer(WORDS, 77)
    assert _tokens(tokenizer, "Make the BALLOON yellow.") == ["make", "the", "balloon", "yellow", ".", "</s>"]
    assert _tokens(tokenizer, "Change 'KELLAR' to 'Café'") == [
        "change", "'", "k", "##e", "##l", "##l", "##a", "##r", "'", "to", "'", "c", "##a", "##f", "##e", "'", "</s>"]
    assert _tokens(tokenizer, "\u2018OK\u2019") == ["\u2018", "o", "##k", "\u2019", "</s>"]
    assert _tokens(tokenizer, "") == ["</s>"]


def test_special_ids_are_byt5s_and_padding_pads_to_the_length_asked():
    tokenizer = word_tokenizer(WORDS, 77)
    assert [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [0, 1, 2]
    assert tokenizer.convert_ids_to_tokens(list(range(3))) == list(SPECIAL_TOKENS)
    batch = tokenizer(["make the", "make the yellow balloon"], padding="max_length", max_length=8, truncation=True)
    assert [ids[-4:] for ids in batch.input_ids] == [[0, 0, 0, 0], [1, 0, 0, 0]]
    long = tokenizer(["the " * 20], padding="max_length", max_length=8, truncation=True).input_ids[0]
    assert len(long) == 8 and long[-1] == 1  # truncated, and still ends with the end token


def test_a_saved_tokenizer_loads_back_with_the_same_ids(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = word_tokenizer(WORDS, 64)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    prompt = "Change the balloon to 'RED' please"
    assert loaded(prompt).input_ids == tokenizer(prompt).input_ids and loaded.model_max_length == 64


def test_the_vocabulary_holds_training_words_only():
    words = set(prompt_words())
    assert {"make", "the", "red", "balloon", "watercolor", "night", "remove"} <= words
    # words that only the held-out phrasings use ('Substitute a {new} for the {obj}.', 'Reposition the {obj} {to}.')
    assert not {"substitute", "reposition"} & words
    assert all(word == word.lower() for word in words)


def test_collected_words_leave_quoted_strings_out():
    words = collect_words(samples=60, min_count=1)
    assert "the" in words and len(words) == len(set(words))
    assert split_words(without_quotes("Change 'KELLAR' to \u2018SUMITH\u2019.")) == ["change", "to", "."]
