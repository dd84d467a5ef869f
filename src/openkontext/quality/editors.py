"""Editors: the callable interface the benchmark drives, the built-in reference editors, and an engine as one.

An editor is any callable ``editor(images, prompt, *, seed, steps, guidance, width, height) -> PIL.Image``;
``images`` is empty for text-to-image. ``copy_input`` is the floor and ``ground_truth`` the ceiling, scored on
the same cases as the model; ``wrong_edit`` is a deliberately wrong editor (tests show it scores low).
``engine_editor`` turns a loaded ``KontextEngine`` into an editor.
"""

from __future__ import annotations

from typing import Protocol

from PIL import Image, ImageDraw

from openkontext.toyworld.sample import generate
from openkontext.toyworld.split import stable_hash


class Editor(Protocol):
    def __call__(self, images: list[Image.Image], prompt: str, *, seed: int, steps: int, guidance: float,
                 width: int, height: int) -> Image.Image: ...


def engine_editor(engine) -> Editor:
    """A ``KontextEngine`` (engine/kontext.py) as an editor: the benchmark's width and height are the output size."""

    def edit(images, prompt, *, seed, steps, guidance, width, height) -> Image.Image:
        return engine.edit(list(images), prompt, seed=seed, steps=steps, guidance=guidance, size=(width, height))

    return edit


def copy_input(images, prompt, *, seed, steps, guidance, width, height) -> Image.Image:
    """The floor: return the input unchanged (a flat grey image when there is none)."""
    if images:
        return images[0].copy()
    return Image.new("RGB", (width, height), (128, 128, 128))


class GroundTruth:
    """The ceiling: the runner hands it the case's target (it cannot be computed from the prompt alone)."""

    def __call__(self, images, prompt, *, seed, steps, guidance, width, height, target: Image.Image) -> Image.Image:
        return target.copy()


ground_truth = GroundTruth()


def wrong_edit(images, prompt, *, seed, steps, guidance, width, height) -> Image.Image:
    """A deliberately wrong editor: the input with an unrelated blob painted somewhere (or, without an input,
    an unrelated training scene)."""
    h = stable_hash(prompt)
    if not images:
        return generate(h % 10**6, split="train", size=(width, height), categories=["text_to_image"]).target
    img = images[0].copy()
    d = ImageDraw.Draw(img)
    x, y = h % max(1, width - 60), (h // 7) % max(1, height - 60)
    d.ellipse([x, y, x + 60, y + 60], fill=((h >> 8) % 256, (h >> 16) % 256, (h >> 24) % 256))
    return img


def unrelated_scene(images, prompt, *, seed, steps, guidance, width, height) -> Image.Image:
    """Another deliberately wrong editor: an unrelated scene from the training split."""
    return generate(stable_hash(prompt) % 10**6, split="train", size=(width, height), categories=["style"]).target


REFERENCES = {"copy_input": copy_input, "ground_truth": ground_truth}
