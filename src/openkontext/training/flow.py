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

import torch
import torch.nn.functional as F
from diffusers import FluxKontextPipeline
from diffusers.pipelines.flux.pipeline_flux_kontext import calculate_shift

from .config import FlowRecipe


def encode_images(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] -> scaled latents, as ``FluxKontextPipeline._encode_vae_image`` (posterior mode)."""
    latents = vae.encode(pixels.to(vae.dtype)).latent_dist.mode()
    return (latents - vae.config.shift_factor) * vae.config.scaling_factor


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


def prepare(pipeline, batch, recipe: FlowRecipe, max_sequence_length: int, generator: torch.Generator,
            device) -> dict:  # fmt: skip
    """Everything one loss evaluation needs, drawn from ``generator`` (noise, sigma, guidance, dropped prompts)."""
    b = batch.target.shape[0]
    with torch.no_grad():
        x0 = encode_images(pipeline.vae, batch.target.to(device))
        context = None if batch.context is None else encode_images(pipeline.vae, batch.context.to(device))
    target_tokens, latent_ids = pack(x0, 0, device)
    context_tokens = context_ids = None
    if context is not None:
        context_tokens, context_ids = pack(context, 1, device)
    noise = torch.randn(target_tokens.shape, generator=generator).to(device, target_tokens.dtype)
    u = torch.sigmoid(recipe.logit_mean + recipe.logit_std * torch.randn(b, generator=generator))
    sigma = shift_sigma(u.clamp(1e-4, 1 - 1e-4), target_tokens.shape[1], pipeline.scheduler.config).to(device)
    lo, hi = recipe.guidance_range
    guidance = (lo + (hi - lo) * torch.rand(b, generator=generator)).to(device)
    drop = torch.rand(b, generator=generator) < recipe.prompt_dropout
    prompts = ["" if d else p for p, d in zip(batch.prompts, drop.tolist())]
    return dict(x0=target_tokens, noise=noise, sigma=sigma, guidance=guidance, prompts=prompts,
                context_tokens=context_tokens, latent_ids=latent_ids, context_ids=context_ids)  # fmt: skip


def encode_text(pipeline, prompts: list[str], max_sequence_length: int, device):
    """The pipeline's own prompt encoding (gradients flow into both text encoders)."""
    return pipeline.encode_prompt(prompt=prompts, prompt_2=None, device=device,
                                  max_sequence_length=max_sequence_length)  # fmt: skip


def token_weights(masks: torch.Tensor, patch: int, edit_weight: float) -> torch.Tensor:
    """(B, H, W) change masks -> (B, tokens) loss weights 1 + edit_weight * (changed share of the token's patch),
    in the packing order of ``pack`` (row-major over the token grid)."""
    share = F.avg_pool2d(masks.float().unsqueeze(1), patch).flatten(1)
    return 1.0 + edit_weight * share


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error per token, averaged with ``weights`` (None: the plain mean)."""
    per_token = (pred.float() - target.float()).pow(2).mean(-1)
    if weights is None:
        return per_token.mean()
    weights = weights.to(per_token.device)
    return (per_token * weights).sum() / weights.sum()


def flow_loss(pipeline, batch, recipe: FlowRecipe, max_sequence_length: int, generator: torch.Generator,
              device) -> tuple[torch.Tensor, dict]:  # fmt: skip
    p = prepare(pipeline, batch, recipe, max_sequence_length, generator, device)
    prompt_embeds, pooled, text_ids = encode_text(pipeline, p["prompts"], max_sequence_length, device)
    s = p["sigma"].view(-1, 1, 1)
    noisy = (1 - s) * p["x0"] + s * p["noise"]
    pred = velocity(pipeline, noisy, p["context_tokens"], p["latent_ids"], p["context_ids"], p["sigma"],
                    p["guidance"], prompt_embeds, pooled, text_ids)  # fmt: skip
    weights = None
    if recipe.edit_weight:
        weights = token_weights(batch.masks, 2 * pipeline.vae_scale_factor, recipe.edit_weight)
    loss = weighted_mse(pred, p["noise"] - p["x0"], weights)
    return loss, {"loss": loss.item(), "sigma": p["sigma"].mean().item()}


def guidance_distill_loss(student, teacher, batch, recipe: FlowRecipe, max_sequence_length: int,
                          generator: torch.Generator, device) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """Phase 2: the student with guidance g on its embedded input matches the teacher's CFG at scale g."""
    p = prepare(teacher, batch, recipe, max_sequence_length, generator, device)
    prompts = batch.prompts
    s = p["sigma"].view(-1, 1, 1)
    noisy = (1 - s) * p["x0"] + s * p["noise"]
    one = torch.ones_like(p["guidance"])
    with torch.no_grad():
        cond = encode_text(teacher, prompts, max_sequence_length, device)
        uncond = encode_text(teacher, [""] * len(prompts), max_sequence_length, device)
        args = (noisy, p["context_tokens"], p["latent_ids"], p["context_ids"], p["sigma"], one)
        v_c = velocity(teacher, *args, *cond)
        v_u = velocity(teacher, *args, *uncond)
        g = p["guidance"].view(-1, 1, 1)
        target = v_u + g * (v_c - v_u)
    student_text = encode_text(student, prompts, max_sequence_length, device)
    pred = velocity(student, noisy, p["context_tokens"], p["latent_ids"], p["context_ids"], p["sigma"],
                    p["guidance"], *student_text)  # fmt: skip
    loss = F.mse_loss(pred.float(), target.float())
    return loss, {"loss": loss.item(), "sigma": p["sigma"].mean().item()}
