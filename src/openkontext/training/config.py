"""The training recipe: one dataclass, and named presets ("tiny" for the test suite, "default" for the real run).

The model architecture is a ``KontextConfig`` (``openkontext.engine.configs``), so what training builds is exactly
what the engine loads: FluxTransformer2DModel + an autoencoder + CLIP (pooled) + T5 (sequence), byte- or word-level
tokenizers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from openkontext.engine.configs import CONFIGS, KontextConfig, tiny_autoencoder_config, vae_config
from openkontext.toyworld import CATEGORIES, FAMILIES
from openkontext.toyworld.sample import check_kinds

from .vocabulary import prompt_words

# The default model's architecture, sized for a plain CPU: 192 wide (3 heads of 64), 2 double + 4 single blocks
# (~5 M transformer parameters) over the pretrained TAEF2 autoencoder (32 latent channels, 8x downsampling: 128
# channels per 2x2 token); byte-level CLIP (pooled) + T5 (sequence, sized to the prompt) trained jointly with the
# transformer; the prompt's quoted words as a glyph strip at RoPE index 8. Measured: see docs/training.md.
DEFAULT_MODEL = KontextConfig(
    transformer=dict(
        patch_size=1, in_channels=128, num_layers=2, num_single_layers=4, attention_head_dim=64,
        num_attention_heads=3, joint_attention_dim=128, pooled_projection_dim=64, guidance_embeds=True,
        axes_dims_rope=(16, 24, 24),
    ),
    # unit variance on ~480 toy-world training images (inputs and targets, train split, 128² and 256²):
    # latent mean 0.0256, std 0.783
    vae=tiny_autoencoder_config(scaling_factor=1.277, shift_factor=0.0256),
    vae_class="TinyAutoencoder",
    clip=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
    t5=dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4),
    clip_max_length=77,
    t5_max_length=160,  # a cap: each prompt gets its own byte length (prompt_sized_text)
    native_side=256,
    glyph_context="line",
    prompt_sized_text=True,
)  # fmt: skip

# openkontext-toy-v1's architecture (AutoencoderKL trained here, 160 padded byte tokens, no glyphs): kept so its
# run folders stay readable.
TOY_V1_MODEL = KontextConfig(
    transformer=dict(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=64,
        num_attention_heads=3, joint_attention_dim=128, pooled_projection_dim=64, guidance_embeds=True,
        axes_dims_rope=(16, 24, 24),
    ),
    vae=vae_config((16, 32, 64, 64), groups=8),  # 1.0 M; (32,64,64,64) trains 2x slower per step on CPU
    clip=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
    t5=dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4),
    clip_max_length=77,
    t5_max_length=160,
    native_side=256,
)  # fmt: skip

# The default architecture whose transformer predicts a change to the context image (engine/prediction.py).
DEFAULT_RESIDUAL_MODEL = dataclasses.replace(DEFAULT_MODEL, prediction="context_residual")

# The context-residual architecture whose text encoders read word tokens (engine/word_tokenizer.py) of the toy
# world's training vocabulary instead of bytes: held-out phrasings reach the model through the words they share.
DEFAULT_WORDS_MODEL = dataclasses.replace(DEFAULT_RESIDUAL_MODEL, text_vocab=prompt_words())

# The word-token architecture twice as deep (4 double + 8 single blocks, ~10 M transformer parameters): is the 5 M
# model's plateau a capacity limit? Warm-started from a 2 + 4 model, it starts computing exactly what that one does.
DEFAULT_DEEP_MODEL = dataclasses.replace(
    DEFAULT_WORDS_MODEL, transformer={**DEFAULT_WORDS_MODEL.transformer, "num_layers": 4, "num_single_layers": 8})

# The word-token architecture with the "rows" glyph strip: each quoted word on its own token row in letters the size
# of a sign's, so that writing a word can be a copy of the strip's letters (the "line" strip, as large as it fits,
# was not read at all by openkontext-toy-v8: docs/training.md, "The glyph strip is not read").
DEFAULT_ROWS_MODEL = dataclasses.replace(DEFAULT_WORDS_MODEL, glyph_context="rows")

# The word-token architecture with the "aligned" glyph canvas: the word to write drawn where it goes, its tokens at the
# target's own positions (the rows strip's letters were not read in 5,851 steps; an aligned word was within 1,409:
# docs/training.md, "An aligned glyph is read").
DEFAULT_ALIGNED_MODEL = dataclasses.replace(DEFAULT_WORDS_MODEL, glyph_context="aligned")

# The aligned architecture twice as wide (6 heads of 64: 384 wide, ~21 M transformer parameters, 41 MB in fp16): is
# the flat benchmark curve of the 5 M model a capacity limit? Warm-started from a 3-head model, it starts computing
# exactly what that one does (growth.py). On a CPU with AMX-BF16 a training step costs ~2.2x the 5 M model's.
DEFAULT_WIDE_MODEL = dataclasses.replace(
    DEFAULT_ALIGNED_MODEL, transformer={**DEFAULT_ALIGNED_MODEL.transformer, "num_attention_heads": 6})

MODELS: dict[str, KontextConfig] = {
    "default": DEFAULT_MODEL, "default-residual": DEFAULT_RESIDUAL_MODEL, "default-words": DEFAULT_WORDS_MODEL,
    "default-deep": DEFAULT_DEEP_MODEL, "default-rows": DEFAULT_ROWS_MODEL, "default-aligned": DEFAULT_ALIGNED_MODEL,
    "default-wide": DEFAULT_WIDE_MODEL, "toy-v1": TOY_V1_MODEL, **CONFIGS,
    "tiny-residual": dataclasses.replace(CONFIGS["tiny-glyph"], prediction="context_residual"),  # for the tests
    "tiny-words": dataclasses.replace(CONFIGS["tiny-glyph"], prediction="context_residual", text_vocab=prompt_words()),
    "tiny-aligned": dataclasses.replace(CONFIGS["tiny-glyph"], glyph_context="aligned"),
}  # fmt: skip


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
    text_lr: float = 3e-4  # the small text encoders are trained jointly
    prompt_dropout: float = 0.1  # the empty prompt, for true classifier-free guidance and for guidance distillation
    # words outside quotes dropped / made-up words put in, per word (data.augment_prompt): unseen phrasings
    prompt_word_drop: float = 0.0
    prompt_word_insert: float = 0.0
    guidance_range: tuple[float, float] = (1.0, 5.0)  # embedded-guidance input drawn uniformly (see flow.py)
    logit_mean: float = 0.0  # t ~ shift(sigmoid(N(mean, std))), the same exponential shift as the sampler
    logit_std: float = 1.0
    ema: float = 0.999  # 0 disables the EMA copy
    decay_from: int | None = None  # as in VAERecipe
    final_lr_ratio: float = 0.1
    # Tokens inside the sample's change mask weigh 1 + edit_weight in the loss: a local edit changes ~3% of the
    # image, so with a uniform loss the copy of the rest dominates and the edit itself is learned last.
    edit_weight: float = 0.0
    # per_sample: each sample's changed tokens together get edit_weight times the weight of all its tokens, however
    # small the change, and every sample counts equally; otherwise one weighted mean over the batch (toy-v1).
    edit_weight_per_sample: bool = False
    # Near-deterministic edits are decided at high noise: this share of their timesteps is drawn uniformly from
    # [high_noise_min, 1]; the categories in sampler_categories (many right answers) keep the sampler's spread.
    high_noise_share: float = 0.0
    high_noise_min: float = 0.85
    sampler_categories: tuple[str, ...] = ("text_to_image", "character_reference")
    # The sampler's last steps (sigma 0.03-0.1 at 50 steps) lie where the shifted logit-normal almost never draws
    # (P(sigma < 0.1) ~ 0.2 %), and the last step's x0 prediction is the output image: this share of every
    # category's timesteps is drawn uniformly from [0, low_noise_max] instead (docs/training.md, "Low noise").
    low_noise_share: float = 0.0
    low_noise_max: float = 0.25
    # Encoded examples: each chunk of chunk_examples fresh samples (one size and kind) is encoded once and used
    # for `reuse` epochs; 0 streams fresh batches encoded per step (toy-v1).
    chunk_examples: int = 0
    reuse: int = 4
    warmup: int = 100
    # A model folder whose tensors of matching shape start the run (transformer and text encoders).
    init_from: str | None = None
    # Start the transformer's output projection at zero: a context-residual model (engine/prediction.py) then
    # begins as an exact copier of the context image, whatever the warm start's output layer had learned.
    zero_output: bool = False
    # Context-residual models: the velocity error is (x0 error) / sigma, which explodes as sigma -> 0; below this
    # sigma the loss weighs the x0 error as at this sigma (0: the plain velocity loss).
    sigma_floor: float = 0.0
    # "adamw", or "muon": torch.optim.Muon for the transformer blocks' weight matrices, AdamW for the rest
    # (training/optimizer.py); a run that switches starts the new optimiser's moments afresh
    optimizer: str = "adamw"
    # An auxiliary loss that teaches where an edit goes: a training-only head on block change_map_block's image
    # tokens (double blocks first, then single) predicts each token's changed share (training/change_map.py); the
    # total loss adds change_map_weight times its cross-entropy. 0: off.
    change_map_weight: float = 0.0
    change_map_block: int = 1
    # Close the pooled text path: the weight that projects CLIP's pooled vector into the blocks' modulation (shared
    # by every token alike) is zeroed and frozen, so the prompt reaches the image only through attention to T5's
    # tokens, which can act on one object. The stock pipeline still computes the pooled vector; it no longer acts.
    close_pooled_text: bool = False


@dataclass
class TrainConfig:
    name: str = "default"
    model: str = "default"  # a key of MODELS
    size: int = 256  # the square training side; `buckets` adds other aspect ratios of about the same area
    buckets: tuple[tuple[int, int], ...] = ()  # (width, height) pairs drawn per batch besides (size, size)
    bucket_prob: float = 0.25
    low_res: int = 0  # a cheaper square side drawn with low_res_prob per chunk (e.g. a 128² first stage)
    low_res_prob: float = 0.0
    # the autoencoder's weights when it is not trained here: a diffusers folder, or a folder with TAEF2's
    # taef2_encoder.pth / taef2_decoder.pth as published
    pretrained_vae: str | None = None
    data_workers: int = 0  # processes rendering toy-world samples for the encoded chunks (0: the training process)
    probe_every_s: float = 0.0  # seconds between runs of the fixed 64-case probe (training/probe.py); 0: never
    categories: tuple[str, ...] = ()  # drawn uniformly; entries may repeat or name one edit family; empty: all
    # A rotating focus: the steps fall into stretches of focus_steps, and stretch s draws focus_share of its examples
    # from focus[s % len(focus)] (a category or edit family), the rest from `categories` (docs/training.md,
    # "Rotating focus"). A family drawn half the time learns in 2,000 steps what the mixture had not in 9,000
    # recolours; the question is whether the next stretch keeps it. Empty: no focus.
    focus: tuple[str, ...] = ()
    focus_steps: int = 1000
    focus_share: float = 0.5
    seed: int = 0
    threads: int = 0  # torch threads; 0 leaves torch's default
    mixed_precision: str = "bf16"  # autocast on CUDA and on CPUs with native bf16 (training/loop.py); "no": fp32
    vae_channels_last: bool = True  # the frozen VAE's weights in channels-last memory (its encodes: ~half a CPU step)
    log_every: int = 10
    ckpt_every_s: float = 300.0  # full-state checkpoint period (seconds) besides the end of a run
    sample_every: int = 0  # steps between benchmark-sample sheets (0: never)
    bench_n: int = 1
    vae: VAERecipe = field(default_factory=VAERecipe)
    flow: FlowRecipe = field(default_factory=FlowRecipe)

    def __post_init__(self):
        if self.focus:
            check_kinds(self.focus)
        if not 0 <= self.focus_share < 1 or self.focus_steps < 1:
            raise ValueError(f"focus_share must lie in [0, 1) and focus_steps be >= 1, not {self.focus_share} and "
                             f"{self.focus_steps}")

    @property
    def architecture(self) -> KontextConfig:
        return MODELS[self.model]

    def mixture(self, step: int) -> list[str]:
        """What the examples of ``step`` are drawn from, uniformly: ``categories`` (all when empty), plus the focus
        of the stretch holding ``step`` repeated until it makes focus_share of the draws."""
        base = list(self.categories or CATEGORIES)
        if not self.focus:
            return base
        kind = self.focus[step // self.focus_steps % len(self.focus)]
        return base + [kind] * round(self.focus_share * len(base) / (1 - self.focus_share))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        vae = VAERecipe(**d.pop("vae", {}))
        flow = d.pop("flow", {})
        flow = FlowRecipe(**{**flow, "guidance_range": tuple(flow.get("guidance_range", (1.0, 5.0))),
                             "sampler_categories": tuple(flow.get("sampler_categories", FlowRecipe.sampler_categories))})
        d["buckets"] = tuple(tuple(b) for b in d.get("buckets", ()))
        d["categories"] = tuple(d.get("categories", ()))
        d["focus"] = tuple(d.get("focus", ()))
        return cls(**d, vae=vae, flow=flow)


PRESETS: dict[str, TrainConfig] = {
    # Runs in the test suite on CPU in seconds.
    "tiny": TrainConfig(
        name="tiny", model="tiny", size=64, threads=1, log_every=1, ckpt_every_s=1e9,
        vae=VAERecipe(steps=6, batch=2, crop=32, lr=1e-3),
        flow=FlowRecipe(steps=6, batch=2, lr=1e-3, text_lr=1e-3, ema=0.0),
    ),
    # The default recipe's mechanics (TAEF2-layout autoencoder, glyphs, prompt-sized text, encoded chunks at two
    # sizes, high-noise timesteps, per-sample change weights) at test size: seconds on CPU.
    "tiny-glyph": TrainConfig(
        name="tiny-glyph", model="tiny-glyph", size=64, low_res=32, low_res_prob=0.5, threads=1, log_every=1,
        ckpt_every_s=1e9, vae=VAERecipe(steps=0),
        flow=FlowRecipe(steps=6, batch=2, lr=1e-3, text_lr=1e-3, ema=0.0, edit_weight=1.0,
                        edit_weight_per_sample=True, high_noise_share=0.5, chunk_examples=4, reuse=2, warmup=2),
    ),
    # openkontext-toy-v1's recipe (AutoencoderKL trained here first), kept to read its run folders.
    "toy-v1": TrainConfig(
        name="toy-v1", model="toy-v1", size=256, buckets=((320, 192), (192, 320), (288, 224), (224, 288)),
        threads=2, flow=FlowRecipe(edit_weight=6.0),
    ),
    # The real run: pretrained TAEF2 autoencoder, mostly 128² chunks encoded once and reused 4 times, the rest at
    # 256² and its aspect buckets (GPU: raise the batch; CPU: one thread in the background).
    "default": TrainConfig(
        name="default", model="default", size=256, buckets=((320, 192), (192, 320), (288, 224), (224, 288)),
        bucket_prob=0.2, low_res=128, low_res_prob=0.75, threads=1, ckpt_every_s=600, probe_every_s=1200,
        pretrained_vae="src/openkontext/models/default/vae",
        flow=FlowRecipe(batch=4, lr=5e-4, text_lr=5e-4, ema=0.998, warmup=200, edit_weight=1.0,
                        edit_weight_per_sample=True, high_noise_share=0.5, chunk_examples=64, reuse=4,
                        init_from="src/openkontext/models/default"),
    ),
}


def _variant(base: str, name: str, **flow) -> TrainConfig:
    """Preset ``base`` for the architecture ``MODELS[name]``, with some of its flow recipe changed."""
    cfg = PRESETS[base]
    return dataclasses.replace(cfg, name=name, model=name, flow=dataclasses.replace(cfg.flow, **flow))


# The default recipe for the context-residual architecture: warm-started from the shipped model's blocks and text
# encoders, its output layer zeroed so it starts as an exact copier.
PRESETS["default-residual"] = _variant("default", "default-residual", zero_output=True, sigma_floor=0.25)
# The residual recipe over word tokens (openkontext-toy-v4): the transformer and the text encoders' layers start from
# a trained context-residual model (set flow.init_from to a folder exported from a default-residual run); the token
# embeddings start afresh; prompts lose and gain words (augment_prompt), so unseen phrasings are read by the words
# they share. (low_noise_share 0.2 halved the error at the sampler's last step but gained no edits: docs/training.md,
# "Low noise".)
PRESETS["default-words"] = _variant("default", "default-words", sigma_floor=0.25, prompt_word_drop=0.05,
                                    prompt_word_insert=0.1)  # fmt: skip
# The word recipe on the deeper architecture, warm-started from the shipped model (growth.py: the extra blocks start
# as gated-off copies of the trained ones).
PRESETS["default-deep"] = _variant("default-words", "default-deep")
# The word recipe with the "rows" glyph strip, warm-started from the shipped model, text edits three times as often as
# each other kind (every kind is drawn uniformly from `categories`): can the model learn to copy the strip's letters?
TEXT_THRICE = tuple(c for name in CATEGORIES for c in [name] * (3 if name == "text" else 1))
PRESETS["default-rows"] = dataclasses.replace(_variant("default-words", "default-rows"), categories=TEXT_THRICE)
# The same with the "aligned" canvas (training/glyphs.py: jittered boxes, a blank share for the engine's first pass),
# warm-started from the aligned line's latest candidate (committed so that no session's training is lost).
PRESETS["default-aligned"] = dataclasses.replace(
    _variant("default-words", "default-aligned", init_from="candidates/openkontext-toy-a6"), categories=TEXT_THRICE)
# The aligned line with text edits at three fifths of the examples and most of them at 256² (at 128² a sign's
# capitals are ~7 px, two letters to a token): more text examples at a legible size (candidate a2 came from it; its
# letters are read better, no word comes out yet: docs/training.md, "More text at a legible size").
TEXT_MOSTLY = tuple(c for name in CATEGORIES for c in [name] * (9 if name == "text" else 1))
PRESETS["text-aligned"] = dataclasses.replace(PRESETS["default-aligned"], name="text-aligned", low_res_prob=0.25,
                                              categories=TEXT_MOSTLY)

# The aligned line with every edit family equally often (local's eight families then take 8/23 of the examples, not
# 1/9; text falls from 3/9 to 3/23): a recolour-only run learned to read colour words in 4,000 steps where the
# category mixture had not in 24,000 (docs/training.md, "Examples per family"). It starts from the line's latest
# candidate.
FAMILY_MIX = tuple(family for families in FAMILIES.values() for family in families)
_ALIGNED = PRESETS["default-aligned"]
PRESETS["default-families"] = dataclasses.replace(
    _ALIGNED, name="default-families", categories=FAMILY_MIX,
    flow=dataclasses.replace(_ALIGNED.flow, init_from="candidates/openkontext-toy-a8"))
# The same with the families that no candidate carries out drawn four times as often, those that succeed at times
# twice, the rest once (candidate a8 came from it: docs/training.md, "Weighted families").
FAMILY_WEIGHTS = {
    **dict.fromkeys(("recolor_object", "add_object", "replace_object", "resize_object", "add_accessory",
                     "remove_accessory", "style_brick", "style_embroidery", "style_pencil", "replace_text", "add_text",
                     "change_weather"), 4),
    **dict.fromkeys(("change_scene", "move_object", "style_pixel", "style_watercolor"), 2),
}
if unknown := set(FAMILY_WEIGHTS) - set(FAMILY_MIX):  # a misspelt family would silently keep weight 1
    raise ValueError(f"FAMILY_WEIGHTS names no edit family: {sorted(unknown)}")
PRESETS["families-weighted"] = dataclasses.replace(
    PRESETS["default-families"], name="families-weighted",
    categories=tuple(name for name in FAMILY_MIX for _ in range(FAMILY_WEIGHTS.get(name, 1))))

# The weighted families on the twice-as-wide transformer, grown from the weighted run's latest candidate, with Muon
# (as that run) at half its rate: Muon's step matches AdamW's per-element size, so twice the fan-in is twice the change
# of a layer's output. Per example it learns no faster than the 5 M model: ~1 % worse at the same rate, level with
# it when both run at half that rate, over ~1,300 steps in which its twin channels stayed ~95 % copies
# (scripts/twin_gap.py): too short to use the width (docs/training.md, "Twice as wide at a matched rate", "The twins
# were still twins").
PRESETS["families-wide"] = dataclasses.replace(
    PRESETS["families-weighted"], name="families-wide", model="default-wide",
    flow=dataclasses.replace(PRESETS["families-weighted"].flow, init_from="candidates/openkontext-toy-a9",
                             lr=2.5e-4, optimizer="muon"))


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
    return TrainConfig.from_dict(cfg.to_dict())  # checks the overridden fields as a recipe read from disk is
