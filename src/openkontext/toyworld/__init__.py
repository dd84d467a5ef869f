"""The toy world: a procedural renderer of simple scenes that emits exact (input, instruction, target) edits.

    from openkontext.toyworld import generate, stream, export
    sample = generate(42, split="train", size=256)          # or size=(256, 192)
    sample.input_image, sample.prompt, sample.target, sample.category, sample.mask, sample.meta

See docs/toyworld.md for the categories, edit families, the held-out split and the speed figure.
"""

from .edits import CATEGORIES, FAMILIES
from .export import export
from .sample import Sample, Turn, generate
from .stream import stream

__all__ = ["CATEGORIES", "FAMILIES", "Sample", "Turn", "export", "generate", "stream"]
