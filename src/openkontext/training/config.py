"""The training recipe: one dataclass, and named presets ("tiny" for the test suite, "default" for the real run).

The model architecture is a ``KontextConfig`` (``openkontext.engine.configs``), so what training builds is exactly
what the engine loads: FluxTransformer2DModel + AutoencoderKL + CLIP (pooled) + T5 (sequence), byte-level tokenizers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from openkontext.engine.configs import CONFIGS, KontextConfig, vae_config

# The default model's architecture, sized for a plain CPU: 192 wide (3 heads of 64), 2 double + 4 single blocks
# (~5 M transformer parameters); an 8x-downsampling 16-channel VAE; byte-level CLIP (pooled) + T5 (sequence)
# trained jointly with the transformer. Measured: see docs/training.md.
DEFAULT_MODEL = KontextConfig(
    transformer=dict(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=64,
        num_attention_heads=3, joint_attention_dim=128, pooled_projection_dim=64, guidance_embeds=True,
        axes_dims_rope=(16, 24, 24),
    ),
    vae=vae_config((16, 32, 64, 64), groups=8),  # 1.0 M; (32,64,64,64) trains 2x slower per step on CPU
    clip=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
    t5=dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4),
    clip_max_length=77,
    t5_max_length=160,  # bytes: the longest toy-world instruction is ~141
    native_side=256,
)  # fmt: skip

MODELS: dict[str, KontextConfig] = {"default": DEFAULT_MODEL, **CONFIGS}


@dataclass
class VAERecipe:
    steps: int = 20_000
    batch: int = 4
    crop: int = 96  # random crops of the `size` images (the VAE is fully convolutional)
    lr: float = 4e-4
    l2: float = 1.0  # loss = l2 * MSE + l1 * L1 + edge * |grad(x) - grad(x')| + kl * KL
    l1: float = 1.0
    edge: float = 1.0  # image-gradient loss: keeps thin strokes (letters) crisp
    kl: float = 1e-6
    decay_from: int | None = None  # from this step the learning rate falls linearly to final_lr_ratio at `steps`
    final_lr_ratio: float = 0.1


@dataclass
class FlowRecipe:
    steps: int = 200_000
    batch: int = 8
    lr: float = 3e-4
    text_lr: float = 3e-4  # the byte-level text encoders are trained jointly
    prompt_dropout: float = 0.1  # the empty prompt, for true classifier-free guidance and for guidance distillation
    guidance_range: tuple[float, float] = (1.0, 5.0)  # embedded-guidance input drawn uniformly (see flow.py)
    logit_mean: float = 0.0  # t ~ shift(sigmoid(N(mean, std))), the same exponential shift as the sampler
    logit_std: float = 1.0
    ema: float = 0.999  # 0 disables the EMA copy
    decay_from: int | None = None  # as in VAERecipe
    final_lr_ratio: float = 0.1
    # Tokens inside the sample's change mask weigh 1 + edit_weight in the loss: a local edit changes ~3% of the
    # image, so with a uniform loss the copy of the rest dominates and the edit itself is learned last.
    edit_weight: float = 0.0


@dataclass
class TrainConfig:
    name: str = "default"
    model: str = "default"  # a key of MODELS
    size: int = 256  # the square training side; `buckets` adds other aspect ratios of about the same area
    buckets: tuple[tuple[int, int], ...] = ()  # (width, height) pairs drawn per batch besides (size, size)
    bucket_prob: float = 0.25
    categories: tuple[str, ...] = ()  # empty: all
    seed: int = 0
    threads: int = 0  # torch threads; 0 leaves torch's default
    mixed_precision: str = "bf16"  # on CUDA: bf16 autocast; ignored on CPU
    log_every: int = 10
    ckpt_every_s: float = 300.0  # full-state checkpoint period (seconds) besides the end of a run
    sample_every: int = 0  # steps between benchmark-sample sheets (0: never)
    bench_n: int = 1
    vae: VAERecipe = field(default_factory=VAERecipe)
    flow: FlowRecipe = field(default_factory=FlowRecipe)

    @property
    def architecture(self) -> KontextConfig:
        return MODELS[self.model]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        vae = VAERecipe(**d.pop("vae", {}))
        flow = d.pop("flow", {})
        flow = FlowRecipe(**{**flow, "guidance_range": tuple(flow.get("guidance_range", (1.0, 5.0)))})
        d["buckets"] = tuple(tuple(b) for b in d.get("buckets", ()))
        d["categories"] = tuple(d.get("categories", ()))
        return cls(**d, vae=vae, flow=flow)


PRESETS: dict[str, TrainConfig] = {
    # Runs in the test suite on CPU in seconds.
    "tiny": TrainConfig(
        name="tiny", model="tiny", size=64, threads=1, log_every=1, ckpt_every_s=1e9,
        vae=VAERecipe(steps=6, batch=2, crop=32, lr=1e-3),
        flow=FlowRecipe(steps=6, batch=2, lr=1e-3, text_lr=1e-3, ema=0.0),
    ),
    # The real run (GPU: raise the batch; CPU: as below, in the background).
    "default": TrainConfig(
        name="default", model="default", size=256, buckets=((320, 192), (192, 320), (288, 224), (224, 288)),
        threads=2, flow=FlowRecipe(edit_weight=6.0),
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A copy of a named preset with top-level fields (and 'vae.x' / 'flow.x' fields) overridden."""
    cfg = TrainConfig.from_dict(PRESETS[name].to_dict())
    for key, value in overrides.items():
        if value is None:
            continue
        if "." in key:
            part, attr = key.split(".", 1)
            setattr(getattr(cfg, part), attr, value)
        else:
            setattr(cfg, key, value)
    return cfg
