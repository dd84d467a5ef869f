"""Edit images drawn outside the toy world with a model and write one contact sheet: input | output per row.

    python scripts/drawn_examples.py [--model default] [--out docs/images/drawn.png] [--steps 50]

The images and prompts are ``openkontext.quality.drawn`` (a flat graphic, a logo, a hand-drawn sign, a texture);
there is no ground truth, so the sheet is for looking at: what a model does one step away from its training data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine.loading import load_engine
from openkontext.quality.drawn import DRAWN_EDITS, drawn_images

CAPTION = 18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path, default=Path("docs/images/drawn.png"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=3.0)
    args = parser.parse_args()
    engine = load_engine(args.model)
    images = drawn_images()
    side = 256
    sheet = Image.new("RGB", (2 * side, len(DRAWN_EDITS) * (side + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (name, prompt) in enumerate(DRAWN_EDITS):
        output = engine.edit([images[name]], prompt, seed=0, steps=args.steps, guidance=args.guidance)
        y = row * (side + CAPTION)
        sheet.paste(images[name], (0, y))
        sheet.paste(output.resize((side, side)), (side, y))
        draw.text((4, y + side + 2), prompt, fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({engine.info.name})")


if __name__ == "__main__":
    main()
