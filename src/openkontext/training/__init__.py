"""Training OpenKontext's default model on the toy world (see docs/training.md).

- ``config``: the recipe dataclass and named presets ("tiny" for tests, "default" for the real run);
- ``data``: batches streamed from ``openkontext.toyworld``, a pure function of (seed, step);
- ``vae``: the autoencoder loss and its held-out evaluation (PSNR, OCR round trip);
- ``flow``: the rectified-flow objective with FluxKontextPipeline's own packing, ids and timestep shift, and
  guidance distillation;
- ``checkpoint``: full training state in a run folder; export to a diffusers folder + openkontext.json;
- ``loop``: the resumable training loops; ``editors``: benchmark editors; ``cli``: the Typer app.
"""

from .config import PRESETS, TrainConfig, preset

__all__ = ["PRESETS", "TrainConfig", "preset"]
