"""Autoencoders side by side: reconstruction PSNR on held-out toy-world images and on images drawn outside the
toy world, the OCR round trip of written words, and encode/decode time, measured in one run.

    python benchmarks/autoencoders.py [--model src/openkontext/models/default] [--other PATH/TO/MODEL] \
        [--taef2 DIR_WITH_TAEF2_PTH] [--n 24] [--threads 1]

Each of --model / --other is a model folder (its ``vae/`` is used); --taef2 loads TAEF2's two published ``.pth``
files into ``TinyAutoencoder``. The toy-world figures are ``openkontext.training.vae.evaluate_vae`` (posterior mode
for AutoencoderKL, as the pipeline encodes context images); the OCR round trip counts held-out text-edit targets
whose new word OCR reads on the original and still reads after encode -> decode.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.quality.drawn import drawn_images
from openkontext.training.vae import encode_mode, evaluate_vae, psnr, round_trip


def load_vae(path: str):
    from diffusers import AutoencoderKL

    from openkontext.engine.tiny_autoencoder import TinyAutoencoder

    folder = Path(path) / "vae" if (Path(path) / "vae").is_dir() else Path(path)
    cls = TinyAutoencoder if json.loads((folder / "config.json").read_text())["_class_name"] == "TinyAutoencoder" \
        else AutoencoderKL
    return cls.from_pretrained(folder, local_files_only=True).float().eval()


def load_taef2(folder: str):
    from openkontext.engine.tiny_autoencoder import TinyAutoencoder

    vae = TinyAutoencoder()
    vae.load_taesd_state_dicts(*(torch.load(f"{folder}/taef2_{half}.pth", map_location="cpu", weights_only=True)
                                 for half in ("encoder", "decoder")))
    return vae.eval()


@torch.no_grad()
def timing(vae, side: int, repeats: int = 3) -> tuple[float, float]:
    x = torch.rand(1, 3, side, side) * 2 - 1
    z = encode_mode(vae, x)
    enc, dec = math.inf, math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        vae.encode(x)
        enc = min(enc, time.perf_counter() - start)
        start = time.perf_counter()
        vae.decode(z)
        dec = min(dec, time.perf_counter() - start)
    return enc * 1000, dec * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="src/openkontext/models/default")
    parser.add_argument("--other", action="append", default=[])
    parser.add_argument("--taef2", default=None)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    candidates = {path: load_vae(path) for path in [args.model, *args.other]}
    if args.taef2:
        candidates["TAEF2 (.pth)"] = load_taef2(args.taef2)
    drawn = drawn_images()
    print(f"| autoencoder | class | toy PSNR (n={args.n}) | OCR round trip | "
          + " | ".join(drawn) + " | encode 256² ms | decode 256² ms |")
    print("|---" * (6 + len(drawn)) + "|")
    for name, vae in candidates.items():
        toy = evaluate_vae(vae, n=args.n, size=256)
        others = [psnr(image, round_trip(vae, image)) for image in drawn.values()]
        enc, dec = timing(vae, 256)
        ocr = f"{toy.get('ocr_round_trip', float('nan')):.0%} of {toy.get('ocr_words', 0)}"
        print(f"| {name} | {type(vae).__name__} | {toy['psnr']:.2f} dB | {ocr} | "
              + " | ".join(f"{p:.2f} dB" for p in others) + f" | {enc:.0f} | {dec:.0f} |")


if __name__ == "__main__":
    main()
