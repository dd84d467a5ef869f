"""The VAE's weights in plain against channels-last memory, side by side in one run: encode and decode milliseconds
at 256² in the three ways the project runs a VAE on a CPU, and how far the outputs move.

    python benchmarks/vae_memory_format.py [--model src/openkontext/models/default] [--batch 16] [--threads 1]

- "fp32": fp32 weights, no autocast (the engine's CPU dtype without bf16 instructions);
- "bf16 autocast": fp32 weights under bf16 autocast (how training encodes its chunks, ``training/loop.py``);
- "bf16 weights": the weights cast to bf16 (the engine's CPU ``auto`` preset where the CPU computes bf16).

Encodes take ``--batch`` images at a time (training encodes chunks in slices of 16), decodes one (the engine decodes
one image per edit); times are per image, best of three. "max |Δ|" compares the channels-last latents (decoded
pixels in [-1, 1]) with the plain ones of the same precision.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time

import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine.acceleration.apply import use_channels_last
from openkontext.engine.loading import load_engine
from openkontext.training.vae import encode_mode

PRECISIONS = ("fp32", "bf16 autocast", "bf16 weights")


def per_image_ms(fn, images: int, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / images * 1000


@torch.no_grad()
def measure(vae, precision: str, batch: int) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(encode ms per image, decode ms per image, latents, decoded pixels) of ``vae`` in ``precision``."""
    dtype = torch.bfloat16 if precision == "bf16 weights" else torch.float32
    vae = vae.to(dtype)
    pixels = (torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dtype)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16 autocast" else contextlib.nullcontext()
    with autocast:
        latents = encode_mode(vae, pixels)
        decoded = vae.decode(latents[:1]).sample
        encode_ms = per_image_ms(lambda: encode_mode(vae, pixels), batch)
        decode_ms = per_image_ms(lambda: vae.decode(latents[:1]), 1)
    return encode_ms, decode_ms, latents.float(), decoded.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="src/openkontext/models/default")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vae = load_engine(args.model, device="cpu").pipeline.vae.float().eval()
    print(f"{type(vae).__name__} of {args.model}, 256², {args.threads} thread(s)")
    print("| precision | encode ms plain | channels-last | speed-up | decode ms plain | channels-last | speed-up "
          "| max |Δ| latents | max |Δ| pixels |")
    print("|---|---|---|---|---|---|---|---|---|")
    for precision in PRECISIONS:
        enc, dec, latents, pixels = measure(copy.deepcopy(vae), precision, args.batch)
        enc_cl, dec_cl, latents_cl, pixels_cl = measure(use_channels_last(copy.deepcopy(vae)), precision, args.batch)
        moved = [f"{(a - b).abs().max():.2g}" for a, b in ((latents, latents_cl), (pixels, pixels_cl))]
        print(f"| {precision} | {enc:.1f} | {enc_cl:.1f} | {enc / enc_cl:.2f}x | {dec:.1f} | {dec_cl:.1f} | "
              f"{dec / dec_cl:.2f}x | {moved[0]} | {moved[1]} |")


if __name__ == "__main__":
    main()
