"""Autoencoder training: AutoencoderKL on toy-world crops, and its held-out evaluation (PSNR, OCR round trip)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from openkontext.toyworld import generate

from .config import VAERecipe
from .data import to_image, to_tensor


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, recipe: VAERecipe, generator: torch.Generator | None = None):
    """Reconstruction loss of a batch in [-1, 1]: MSE + L1 + image-gradient L1 (crisp strokes) + a tiny KL."""
    posterior = vae.encode(x).latent_dist
    z = posterior.sample(generator=generator)
    y = vae.decode(z).sample
    mse = F.mse_loss(y, x)
    l1 = F.l1_loss(y, x)
    (gx, gy), (hx, hy) = _gradients(x), _gradients(y)
    edge = F.l1_loss(hx, gx) + F.l1_loss(hy, gy)
    kl = posterior.kl().mean() / x[0].numel()
    loss = recipe.l2 * mse + recipe.l1 * l1 + recipe.edge * edge + recipe.kl * kl
    return loss, {"loss": loss.item(), "mse": mse.item(), "l1": l1.item(), "edge": edge.item(), "kl": kl.item()}


def encode_mode(vae, pixels: torch.Tensor) -> torch.Tensor:
    """The unscaled latents the pipeline takes for ``pixels`` (diffusers' ``retrieve_latents`` in "argmax" mode):
    AutoencoderKL's posterior mode, TinyAutoencoder's deterministic latents."""
    encoded = vae.encode(pixels)
    return encoded.latent_dist.mode() if hasattr(encoded, "latent_dist") else encoded.latents


@torch.no_grad()
def round_trip(vae, image) -> "Image.Image":
    """Encode (mode, as the pipeline does for context images) and decode one PIL image."""
    z = encode_mode(vae, to_tensor(image)[None].to(vae.device, vae.dtype))
    return to_image(vae.decode(z, return_dict=False)[0][0])


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float32) - np.asarray(b, np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


@torch.no_grad()
def evaluate_vae(vae: AutoencoderKL, n: int = 16, size: int = 256, ocr: bool = True) -> dict:
    """Held-out reconstruction PSNR over ``n`` images, and the OCR round trip on ``n`` text-editing targets:
    the fraction of words that OCR reads on the original and still reads after encode/decode."""
    was_training = vae.training
    vae.eval()
    values = [psnr(s.target, round_trip(vae, s.target)) for s in (generate(10_000 + i, split="heldout", size=size)
                                                                   for i in range(n))]  # fmt: skip
    result = {"psnr": float(np.mean(values)), "n": n}
    if ocr:
        from openkontext.quality import ocr as bench_ocr

        if bench_ocr.available():
            read_before = read_after = 0
            for i in range(n):
                s = generate(20_000 + i, split="heldout", size=size, categories=["text"])
                word, box = s.meta.get("new_word"), s.meta["text_box"]
                if not word or word not in bench_ocr.read_words(s.target, box):
                    continue
                read_before += 1
                read_after += word in bench_ocr.read_words(round_trip(vae, s.target), box)
            result.update(ocr_words=read_before, ocr_round_trip=read_after / max(1, read_before))
    vae.train(was_training)
    return result
