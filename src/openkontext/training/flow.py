"""The rectified-flow objective of FluxTransformer2DModel, with exactly the packing, position ids, latent scaling,
prompt encoding and timestep shift that diffusers' ``FluxKontextPipeline`` uses when it samples.

Sampling (the pipeline): x_1 = noise; for sigma_i from 1 down, x <- x + (sigma_{i+1} - sigma_i) * v(x, sigma_i),
where sigma is ``linspace(1, 1/steps, steps)`` shifted by ``exp(mu) / (exp(mu) + 1/sigma - 1)``, mu from the image
token count (``calculate_shift``). The context image's latent tokens (RoPE index 1) follow the target's (index 0)
on the sequence axis and the prediction is sliced back to the target tokens.

Training (here): x_sigma = (1 - sigma) * x_0 + sigma * noise, target velocity v = noise - x_0, with sigma drawn
logit-normally and pushed through the same shift. The prompt is replaced by "" with probability
``prompt_dropout``, so the model also learns the unconditional velocity. With ``edit_weight`` > 0 the squared error
of each token is weighted by how much of its 16x16-pixel patch the edit changes (``token_weights``).

Guidance: the engine passes ``guidance`` to the transformer's embedded-guidance input (FLUX.1 [dev] style). In this
base objective the guidance input is drawn uniformly from ``guidance_range`` and the target does not depend on it,
so any value is in-distribution and, after base training alone, guidance has no effect. ``guidance_distill_loss``
below is the second phase that makes it act: a frozen copy of the base model (the teacher) gives
v_u + g (v_c - v_u) (classifier-free guidance at scale g), and the student learns to produce that in one call with
g on its guidance input.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import FluxKontextPipeline
from diffusers.pipelines.flux.pipeline_flux_kontext import calculate_shift

from openkontext.engine.conditioning import GLYPH_INDEX, batch_text_length, glyph_strip
from openkontext.engine.prediction import MIN_SIGMA
from openkontext.engine.preserve import mask_box

from .change_map import ChangeMapHead, change_map_loss
from .config import FlowRecipe
from .data import augment_prompt, to_tensor
from .glyphs import training_glyph
from .latents import EncodedBatch
from .vae import encode_mode

TextLength = Callable[[list[str]], int]  # prompts -> the T5 sequence length of their batch


def text_length_for(architecture, tokenizer) -> TextLength:
    """The architecture's rule: prompt-sized tokens under ``tokenizer`` (up to the cap), or always the cap."""
    cap = architecture.t5_max_length
    if architecture.prompt_sized_text:
        return lambda prompts: batch_text_length(prompts, cap, tokenizer)
    return lambda prompts: cap


def encode_images(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] -> scaled latents, as ``FluxKontextPipeline._encode_vae_image`` (posterior mode); float32
    also when the encoder ran under bf16 autocast (the flow's noise mixing and targets are computed from them)."""
    latents = encode_mode(vae, pixels.to(vae.dtype))
    return (latents.float() - vae.config.shift_factor) * vae.config.scaling_factor


def pack(latents: torch.Tensor, index: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, h, w) latents -> (B, h/2 * w/2, 4C) tokens and their (h/2 * w/2, 3) position ids, RoPE index first."""
    b, c, h, w = latents.shape
    tokens = FluxKontextPipeline._pack_latents(latents, b, c, h, w)
    ids = FluxKontextPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, latents.dtype)
    ids[..., 0] = index
    return tokens, ids


def shift_sigma(u: torch.Tensor, image_seq_len: int, scheduler_config) -> torch.Tensor:
    """The sampler's dynamic exponential shift applied to u in (0, 1)."""
    mu = calculate_shift(
        image_seq_len,
        scheduler_config.get("base_image_seq_len", 256),
        scheduler_config.get("max_image_seq_len", 4096),
        scheduler_config.get("base_shift", 0.5),
        scheduler_config.get("max_shift", 1.15),
    )
    return math.exp(mu) / (math.exp(mu) + (1 / u - 1))


def velocity(pipeline, noisy_tokens, context_tokens, latent_ids, context_ids, sigma, guidance, prompt_embeds,
             pooled, text_ids) -> torch.Tensor:  # fmt: skip
    """The transformer's velocity for the target tokens (the pipeline's call, batched)."""
    hidden = noisy_tokens if context_tokens is None else torch.cat([noisy_tokens, context_tokens], dim=1)
    ids = latent_ids if context_ids is None else torch.cat([latent_ids, context_ids], dim=0)
    out = pipeline.transformer(
        hidden_states=hidden,
        timestep=sigma,  # the pipeline passes timestep / 1000 == sigma
        guidance=guidance,
        pooled_projections=pooled,
        encoder_hidden_states=prompt_embeds,
        txt_ids=text_ids,
        img_ids=ids,
        return_dict=False,
    )[0]
    return out[:, : noisy_tokens.shape[1]]


def context_sequence(context: torch.Tensor | None, glyphs: torch.Tensor | None, device):
    """The tokens and ids that follow the target's: the context image at RoPE index 1, the glyph strip at
    ``GLYPH_INDEX`` (either may be absent)."""
    blocks = [pack(latents, index, device) for latents, index in ((context, 1), (glyphs, GLYPH_INDEX))
              if latents is not None]  # fmt: skip
    if not blocks:
        return None, None
    return torch.cat([t for t, _ in blocks], dim=1), torch.cat([i for _, i in blocks], dim=0)


def encode_batch(pipeline, batch, glyphs: str, device, rng: np.random.Generator | None = None) -> EncodedBatch:
    """A pixel batch (``data.EditBatch``) encoded as the pipeline would encode it, with glyph strips of layout
    ``glyphs`` ("": none). ``rng`` jitters an aligned canvas's box as training does (glyphs.py); None draws the
    word in the change mask's own box (the probe's fixed cases)."""
    strips = None
    if glyphs:
        h, w = batch.target.shape[-2:]
        strips = torch.stack([to_tensor(_glyph(p, (w, h), glyphs, mask.numpy(), rng))
                              for p, mask in zip(batch.prompts, batch.masks)])  # fmt: skip
    with torch.no_grad():
        return EncodedBatch(
            target=encode_images(pipeline.vae, batch.target.to(device)),
            context=None if batch.context is None else encode_images(pipeline.vae, batch.context.to(device)),
            glyphs=None if strips is None else encode_images(pipeline.vae, strips.to(device)),
            prompts=list(batch.prompts), categories=list(batch.categories), masks=batch.masks,
        )  # fmt: skip


def _glyph(prompt: str, size: tuple[int, int], layout: str, mask: np.ndarray, rng: np.random.Generator | None):
    if rng is None:
        return glyph_strip(prompt, *size, layout, box=mask_box(mask))
    return training_glyph(prompt, size, layout, mask, rng)


def draw_sigma(recipe: FlowRecipe, categories: list[str], image_seq_len: int, scheduler_config,
               generator: torch.Generator) -> torch.Tensor:  # fmt: skip
    """Per-sample sigma: the sampler's shifted logit-normal, or, for a ``high_noise_share`` of the
    near-deterministic categories' samples, uniform in [high_noise_min, 1], and for a ``low_noise_share`` of all
    samples uniform in [0, low_noise_max] (kept above the prediction's MIN_SIGMA)."""
    b = len(categories)
    u = torch.sigmoid(recipe.logit_mean + recipe.logit_std * torch.randn(b, generator=generator))
    sigma = shift_sigma(u.clamp(1e-4, 1 - 1e-4), image_seq_len, scheduler_config)
    high = recipe.high_noise_min + (1 - recipe.high_noise_min) * torch.rand(b, generator=generator)
    pick = torch.rand(b, generator=generator) < recipe.high_noise_share
    pick &= torch.tensor([c not in recipe.sampler_categories for c in categories])
    sigma = torch.where(pick, high, sigma)
    if recipe.low_noise_share:  # drawn only when asked, so older runs resume on the same random stream
        low = (recipe.low_noise_max * torch.rand(b, generator=generator)).clamp_min(MIN_SIGMA)
        sigma = torch.where(torch.rand(b, generator=generator) < recipe.low_noise_share, low, sigma)
    return sigma


def prepare(pipeline, batch: EncodedBatch, recipe: FlowRecipe, generator: torch.Generator, device) -> dict:
    """Everything one loss evaluation needs, drawn from ``generator`` (noise, sigma, guidance, dropped prompts)."""
    b = batch.target.shape[0]
    target_tokens, latent_ids = pack(batch.target.to(device), 0, device)
    context_tokens, context_ids = context_sequence(
        None if batch.context is None else batch.context.to(device),
        None if batch.glyphs is None else batch.glyphs.to(device), device,
    )  # fmt: skip
    noise = torch.randn(target_tokens.shape, generator=generator).to(device, target_tokens.dtype)
    sigma = draw_sigma(recipe, batch.categories, target_tokens.shape[1], pipeline.scheduler.config, generator)
    lo, hi = recipe.guidance_range
    guidance = (lo + (hi - lo) * torch.rand(b, generator=generator)).to(device)
    drop = torch.rand(b, generator=generator) < recipe.prompt_dropout
    prompts = ["" if d else p for p, d in zip(batch.prompts, drop.tolist())]
    if recipe.prompt_word_drop or recipe.prompt_word_insert:
        prompts = [augment_prompt(p, generator, recipe.prompt_word_drop, recipe.prompt_word_insert) if p else p
                   for p in prompts]  # fmt: skip
    return dict(x0=target_tokens, noise=noise, sigma=sigma.to(device), guidance=guidance, prompts=prompts,
                context_tokens=context_tokens, latent_ids=latent_ids, context_ids=context_ids)  # fmt: skip


def encode_text(pipeline, prompts: list[str], text_length: TextLength, device):
    """The pipeline's own prompt encoding (gradients flow into both text encoders)."""
    return pipeline.encode_prompt(prompt=prompts, prompt_2=None, device=device,
                                  max_sequence_length=text_length(prompts))  # fmt: skip


def token_shares(masks: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, H, W) change masks -> (B, tokens): the changed share of each token's patch, in ``pack``'s (row-major)
    order."""
    return F.avg_pool2d(masks.float().unsqueeze(1), patch).flatten(1)


def token_weights(masks: torch.Tensor, patch: int, edit_weight: float, per_sample: bool = False) -> torch.Tensor:
    """(B, H, W) change masks -> (B, tokens) loss weights, in the packing order of ``pack`` (row-major).

    Plain: 1 + edit_weight * (changed share of the token's patch). Per sample: 1 + edit_weight * N * share / sum
    of the sample's shares, so the changed tokens of every sample carry edit_weight times its uniform weight."""
    share = token_shares(masks, patch)
    if not per_sample:
        return 1.0 + edit_weight * share
    total = share.sum(1, keepdim=True)
    return 1.0 + edit_weight * share * share.shape[1] / total.clamp_min(1e-6)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
                 per_sample: bool = False) -> torch.Tensor:  # fmt: skip
    """Mean squared error per token, averaged with ``weights`` (None: the plain mean); ``per_sample`` averages
    within each sample first, so every sample counts the same."""
    per_token = (pred.float() - target.float()).pow(2).mean(-1)
    if weights is None:
        return per_token.mean()
    weights = weights.to(per_token.device)
    if per_sample:
        return ((per_token * weights).sum(1) / weights.sum(1)).mean()
    return (per_token * weights).sum() / weights.sum()


def flow_loss(pipeline, batch: EncodedBatch, recipe: FlowRecipe, text_length: TextLength,
              generator: torch.Generator, device, change_head: ChangeMapHead | None = None,
              ) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """The rectified-flow loss of one batch, plus ``recipe.change_map_weight`` times the change-map loss when a
    ``change_head`` is attached (change_map.py); ``parts["loss"]`` is the flow loss alone, comparable across runs."""
    p = prepare(pipeline, batch, recipe, generator, device)
    prompt_embeds, pooled, text_ids = encode_text(pipeline, p["prompts"], text_length, device)
    s = p["sigma"].view(-1, 1, 1)
    noisy = (1 - s) * p["x0"] + s * p["noise"]
    pred = velocity(pipeline, noisy, p["context_tokens"], p["latent_ids"], p["context_ids"], p["sigma"],
                    p["guidance"], prompt_embeds, pooled, text_ids)  # fmt: skip
    weights = None
    if recipe.edit_weight:
        patch = 2 * pipeline.vae_scale_factor
        weights = token_weights(batch.masks, patch, recipe.edit_weight, recipe.edit_weight_per_sample)
    target = p["noise"] - p["x0"]
    if recipe.sigma_floor:  # a context-residual model's velocity error is its x0 error / sigma
        scale = (p["sigma"] / recipe.sigma_floor).clamp(max=1).view(-1, 1, 1)
        pred, target = pred * scale, target * scale
    loss = weighted_mse(pred, target, weights, recipe.edit_weight_per_sample)
    parts = {"loss": loss.item(), "sigma": p["sigma"].mean().item(), "text_tokens": text_ids.shape[0]}
    if change_head is not None and batch.context is not None:  # text-to-image changes everything, everywhere
        if batch.context.shape != batch.target.shape:
            raise ValueError("the change-map loss needs the context image on the target's grid")
        patch = 2 * pipeline.vae_scale_factor
        asked = torch.tensor([bool(prompt) for prompt in p["prompts"]])  # a dropped prompt asks for no change
        change = change_map_loss(change_head, token_shares(batch.masks, patch),
                                 token_weights(batch.masks, patch, 1.0, per_sample=True), asked)  # fmt: skip
        parts["change_map"] = change.item()
        loss = loss + recipe.change_map_weight * change
    return loss, parts


def guidance_distill_loss(student, teacher, batch: EncodedBatch, recipe: FlowRecipe, text_length: TextLength,
                          generator: torch.Generator, device) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """Phase 2: the student with guidance g on its embedded input matches the teacher's CFG at scale g."""
    p = prepare(teacher, batch, recipe, generator, device)
    prompts = batch.prompts
    s = p["sigma"].view(-1, 1, 1)
    noisy = (1 - s) * p["x0"] + s * p["noise"]
    one = torch.ones_like(p["guidance"])
    with torch.no_grad():
        cond = encode_text(teacher, prompts, text_length, device)
        uncond = encode_text(teacher, [""] * len(prompts), text_length, device)
        args = (noisy, p["context_tokens"], p["latent_ids"], p["context_ids"], p["sigma"], one)
        v_c = velocity(teacher, *args, *cond)
        v_u = velocity(teacher, *args, *uncond)
        g = p["guidance"].view(-1, 1, 1)
        target = v_u + g * (v_c - v_u)
    student_text = encode_text(student, prompts, text_length, device)
    pred = velocity(student, noisy, p["context_tokens"], p["latent_ids"], p["context_ids"], p["sigma"],
                    p["guidance"], *student_text)  # fmt: skip
    loss = F.mse_loss(pred.float(), target.float())
    return loss, {"loss": loss.item(), "sigma": p["sigma"].mean().item()}
