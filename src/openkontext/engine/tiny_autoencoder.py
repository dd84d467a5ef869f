"""A tiny convolutional autoencoder as a diffusers component: the layout of TAEF2 ("Tiny AutoEncoder for FLUX.2",
madebyollin/taesd, MIT), whose pretrained weights the default model ships.

It stands in for ``AutoencoderKL`` inside the stock ``FluxKontextPipeline``: ``encode`` returns an object with
``.latents`` (what ``retrieve_latents`` reads), ``decode(z, return_dict=False)[0]`` returns pixels, and the config
carries ``block_out_channels`` (four entries: 8x downsampling, which the pipeline reads as ``vae_scale_factor``),
``latent_channels``, ``scaling_factor`` and ``shift_factor``. Pixels cross the boundary in the pipeline's
[-1, 1] range; the network itself works in [0, 1].

A folder saved with ``save_pretrained`` names this class in ``model_index.json``; diffusers imports it from this
module when the pipeline is loaded, so no other loading code is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ModelMixin  # noqa: F401  (diffusers finds the load method through this module's namespace)
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class TinyAutoencoderOutput(BaseOutput):
    latents: torch.Tensor


def _conv(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class _Block(nn.Module):
    """Three 3x3 convolutions with a residual; with ``pool``, a 1x1 bottleneck branch (GroupNorm) added first."""

    def __init__(self, width: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU(), _conv(width, width))
        self.pool = None
        if pool:
            self.pool = nn.Sequential(
                nn.Conv2d(width, 4 * width, 1, bias=False), nn.GroupNorm(4, 4 * width), nn.ReLU(),
                nn.Conv2d(4 * width, width, 1, bias=False),
            )  # fmt: skip
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def _encoder(width: int, latent_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = [_conv(3, width), _Block(width)]
    for level in range(3):  # three stride-2 stages: 8x downsampling; the last one has the pooled blocks
        layers += [_conv(width, width, stride=2, bias=False)]
        layers += [_Block(width, pool=level == 2) for _ in range(3)]
    layers += [_conv(width, latent_channels)]
    return nn.Sequential(*layers)


def _decoder(width: int, latent_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = [_Clamp(), _conv(latent_channels, width), nn.ReLU()]
    layers += [_Block(width, pool=True) for _ in range(3)]
    for blocks in (3, 3, 1):
        layers += [nn.Upsample(scale_factor=2), _conv(width, width, bias=False)]
        layers += [_Block(width) for _ in range(blocks)]
    layers += [_conv(width, 3)]
    return nn.Sequential(*layers)


class TinyAutoencoder(ModelMixin, ConfigMixin):
    """TAEF2's layout: RGB -> ``latent_channels`` at 1/8 resolution -> RGB, deterministic (no posterior)."""

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 32,
        width: int = 64,
        block_out_channels: tuple[int, ...] = (64, 64, 64, 64),  # read by the pipeline: 2**(len-1) = 8x
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
    ):
        super().__init__()
        self.encoder = _encoder(width, latent_channels)
        self.decoder = _decoder(width, latent_channels)

    def encode(self, pixels: torch.Tensor, return_dict: bool = True):
        """Pixels in [-1, 1] -> unscaled latents (the pipeline applies shift and scale)."""
        latents = self.encoder((pixels + 1) / 2)
        return TinyAutoencoderOutput(latents=latents) if return_dict else (latents,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True, generator=None):
        """Unscaled latents -> pixels in [-1, 1]."""
        pixels = self.decoder(latents).clamp(0, 1) * 2 - 1
        return DecoderOutput(sample=pixels) if return_dict else (pixels,)

    def load_taesd_state_dicts(self, encoder: dict, decoder: dict) -> None:
        """Load the two ``nn.Sequential`` state dicts as published (``taef2_encoder.pth``, ``taef2_decoder.pth``)."""
        self.encoder.load_state_dict(encoder)
        self.decoder.load_state_dict(decoder)
