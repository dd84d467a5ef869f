"""Named Kontext model configurations: a tiny test model and the full FLUX.1 Kontext [dev] differ only by numbers.

``build_pipeline(config)`` makes a complete, randomly initialised ``FluxKontextPipeline`` from one of these, offline:
the tokenizers are byte-level (``ByT5Tokenizer`` needs no vocabulary files) or, for a configuration with a
``text_vocab``, word-level (``word_tokenizer.py``). It serves the test suite, the placeholder
model the server runs when no trained weights are present, the GPU benchmark (the real architecture at full size),
and training, which starts from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the configurations are plain data; only build_pipeline needs torch/diffusers/transformers
    import torch


@dataclass(frozen=True)
class KontextConfig:
    transformer: dict
    vae: dict
    clip: dict  # CLIPTextConfig fields: gives the pooled prompt vector
    t5: dict  # T5Config fields: gives the per-token prompt sequence
    clip_max_length: int = 77
    t5_max_length: int = 512
    native_side: int = 1024  # the pixel side of the square bucket the model is trained at
    scheduler: dict = field(default_factory=dict)
    vae_class: str = "AutoencoderKL"  # or "TinyAutoencoder" (engine/tiny_autoencoder.py, TAEF2's layout)
    glyph_context: str = ""  # the glyph strip's layout (engine/conditioning.py GLYPH_LAYOUTS); "": no strip
    prompt_sized_text: bool = False
    prediction: str = "velocity"  # what the transformer's output means (engine/prediction.py)
    # Both text encoders read word tokens of this vocabulary (engine/word_tokenizer.py); empty: bytes (ByT5)
    text_vocab: tuple[str, ...] = ()


def tiny_autoencoder_config(scaling_factor: float, shift_factor: float, latent_channels: int = 32,
                            width: int = 64) -> dict:  # fmt: skip
    """TinyAutoencoder fields: TAEF2's layout; the scaling brings the training data's latents to unit variance."""
    return dict(latent_channels=latent_channels, width=width, scaling_factor=scaling_factor,
                shift_factor=shift_factor)  # fmt: skip


def vae_config(channels: tuple[int, ...], latent_channels: int = 16, layers: int = 1, groups: int = 32) -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels,
        layers_per_block=layers,
        latent_channels=latent_channels,
        norm_num_groups=groups,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )


CONFIGS: dict[str, KontextConfig] = {
    # Smallest thing that runs the real pipeline end to end; for unit tests (well under a second per edit).
    "tiny": KontextConfig(
        transformer=dict(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
        ),
        vae=vae_config((8, 8, 8, 8), groups=4),
        clip=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2),
        t5=dict(d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4),
        clip_max_length=32,
        t5_max_length=48,
        native_side=64,
    ),
    # The default model's design at test size: a TAEF2-layout autoencoder, glyph strip, prompt-sized text.
    "tiny-glyph": KontextConfig(
        transformer=dict(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
        ),
        vae=tiny_autoencoder_config(1.0, 0.0, latent_channels=4, width=8),
        vae_class="TinyAutoencoder",
        clip=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2),
        t5=dict(d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4),
        clip_max_length=32,
        t5_max_length=48,
        native_side=64,
        glyph_context="line",
        prompt_sized_text=True,
    ),
    # The random placeholder (`model=random`): about the default model's size, random weights — a reference that
    # trained weights must beat, and a fallback should the packaged weights be missing.
    "small": KontextConfig(
        transformer=dict(
            patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=32,
            num_attention_heads=4, joint_attention_dim=128, pooled_projection_dim=64, guidance_embeds=True,
            axes_dims_rope=(8, 12, 12),
        ),
        vae=vae_config((32, 64, 64, 64), groups=32),
        clip=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        t5=dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4),
        clip_max_length=77,
        t5_max_length=128,
        native_side=256,
    ),
    # FLUX.1 Kontext [dev]'s published architecture (12 B transformer, CLIP-L, T5-XXL encoder, 16-channel VAE).
    "flux-kontext-dev": KontextConfig(
        transformer=dict(
            patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ),
        vae=vae_config((128, 256, 512, 512), layers=2),
        clip=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  projection_dim=768),
        t5=dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu",
                dense_act_fn="gelu_new", is_gated_act=True),
        clip_max_length=77,
        t5_max_length=512,
        native_side=1024,
    ),
}  # fmt: skip

SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)


def build_pipeline(config: KontextConfig | str, *, seed: int = 0, dtype: torch.dtype | None = None):
    """A complete FluxKontextPipeline with random weights drawn from ``seed`` (the same seed, the same weights);
    float32 unless ``dtype`` says otherwise."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from .prediction import apply_prediction

    dtype = dtype or torch.float32
    if isinstance(config, str):
        config = CONFIGS[config]
    tokenizers = _tokenizers(config)
    vocab_size = len(tokenizers[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(**config.transformer)
        if config.vae_class == "TinyAutoencoder":
            from .tiny_autoencoder import TinyAutoencoder

            vae = TinyAutoencoder(**config.vae)
        else:
            vae = AutoencoderKL(**config.vae)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=vocab_size, max_position_embeddings=config.clip_max_length,
                pad_token_id=0, eos_token_id=1, bos_token_id=1, **config.clip,
            )
        )  # fmt: skip
        text_encoder_2 = T5EncoderModel(
            T5Config(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **config.t5)
        )
    pipeline = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**{**SCHEDULER, **config.scheduler}),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizers[0],
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizers[1],
        transformer=transformer,
    )
    apply_prediction(transformer, config.prediction)
    if dtype != torch.float32:
        pipeline.to(dtype=dtype)
    for module in (transformer, vae, text_encoder, text_encoder_2):
        module.eval().requires_grad_(False)
    return pipeline


def _tokenizers(config: KontextConfig) -> tuple:
    """(CLIP's, T5's) tokenizer: word-level when the configuration has a vocabulary, else byte-level. Their special
    ids agree (pad 0, end 1), as the text encoders' configurations above assume."""
    if config.text_vocab:
        from .word_tokenizer import word_tokenizer

        return (word_tokenizer(config.text_vocab, config.clip_max_length),
                word_tokenizer(config.text_vocab, config.t5_max_length))  # fmt: skip
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer(model_max_length=config.clip_max_length), ByT5Tokenizer(model_max_length=config.t5_max_length)
