"""A word-level, lower-case tokenizer for small text encoders trained from scratch, with a character fallback.

A byte-level encoder of two layers has to assemble every word from its bytes, and measured on the toy world it did
not carry that over to phrasings it had not seen (docs/training.md, "The prompt gap"): "Turn the pink balloon
yellow." was not read as the recolour it is. Here each known word is one token, so the words that decide an edit
(colours, objects, scenes, styles) reach the model as the same token whatever sentence they stand in; a word the
vocabulary lacks is spelled in characters (WordPiece's longest-match over single characters and ``##``
continuations), so any prompt still tokenizes, and quoted words also reach the model as a glyph strip.

The result is a stock ``PreTrainedTokenizerFast`` (``tokenizer.json``), so ``save_pretrained`` / ``from_pretrained``
and diffusers' pipeline loading need nothing of ours. Its ids keep ByT5's special ids (pad 0, end 1, unknown 2),
which the text encoders' configurations already use.
"""

from __future__ import annotations

import string

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2: as ByT5's
# every printable ASCII character after lower-casing and the typographic quotes, alone and as a continuation
CHARACTERS = (*string.ascii_lowercase, *string.digits, *string.punctuation, "\u2018", "\u2019", "\u201c", "\u201d")


def _normalizer():
    from tokenizers import normalizers

    return normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()])


def normalize(text: str) -> str:
    """What the tokenizer's normalizer makes of ``text``: accents stripped, lower case ("Café" -> "cafe")."""
    return _normalizer().normalize_str(text)


def split_words(text: str) -> list[str]:
    """``text`` normalized and split as the tokenizer splits it before the vocabulary (to collect a vocabulary)."""
    from tokenizers import pre_tokenizers

    return [word for word, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(normalize(text))]


def word_tokenizer(words: tuple[str, ...] | list[str], max_length: int):
    """A fast tokenizer whose vocabulary is the special tokens, every character in ``CHARACTERS`` (alone and as a
    ``##`` continuation) and ``words``; it appends the end token and pads to ``max_length`` when asked."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = [*SPECIAL_TOKENS, *CHARACTERS, *(f"##{c}" for c in CHARACTERS)]
    tokens += [w for w in dict.fromkeys(normalize(word) for word in words) if w not in set(tokens)]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=100))
    tokenizer.normalizer = _normalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=max_length, pad_token="<pad>",
                                   eos_token="</s>", unk_token="<unk>")  # fmt: skip
