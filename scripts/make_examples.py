"""Render the example images from the toy world (held-out split): run once, commit the PNGs.

They live in the package (the playground's gallery serves them); ``examples/`` at the repository root links there.

    python scripts/make_examples.py
"""

from __future__ import annotations

import random
from pathlib import Path

from openkontext.toyworld.layout import random_scene
from openkontext.toyworld.scene import render

OUT = Path(__file__).resolve().parents[1] / "src" / "openkontext" / "api" / "static" / "examples"
SIZE = (256, 256)

EXAMPLES = {
    # name: (seed, random_scene options) — the doc's own examples: a sign to re-letter, a character to move, a scene
    "sign.png": (3, dict(objects=(1, 1), characters=(0, 0), sign_words=["KELLAR", "KELLAR", "SUMITH"], kind="city")),
    "character.png": (11, dict(objects=(1, 2), characters=(1, 1), kind="forest")),
    "scene.png": (5, dict(objects=(2, 3), characters=(1, 1), kind="beach")),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, (seed, options) in EXAMPLES.items():
        scene = random_scene(random.Random(seed), "heldout", SIZE, **options)
        render(scene, SIZE).save(OUT / name)
        print(OUT / name)


if __name__ == "__main__":
    main()
