"""The engine: one loaded Kontext model, and ``edit()`` — images + instruction in, edited image out.

Sampling is diffusers' ``FluxKontextPipeline``: each context image is VAE-encoded, patchified and appended to the
target tokens along the sequence axis; each Euler step of the flow-matching scheduler slices the prediction back to
the target tokens. The thin subclass below gives context image *i* its own RoPE index *i* (1…4), as in the Kontext
paper, where the stock pipeline takes one. This module chooses the resolution bucket, seeds the noise, reports
progress per step, renders cheap previews and stops between steps when asked. A model with an ``aligned`` glyph
canvas (conditioning.py) samples a prompt that writes a word twice: first on a blank canvas, to find where the
image changes, then with the word drawn there, guided towards the drawn letters at the model's ``glyph_guidance``
(glyph_guidance.py; progress counts both passes; a first pass that changes nothing is the result, and the edit
ends at half the steps it announced). An edit may ask for LoRA adapters
loaded at start (engine/lora.py): they are activated for it, and edits that ask for others wait their turn.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers import FluxKontextPipeline
from PIL import Image

from .acceleration.options import AccelerationOptions
from .acceleration.runtime import AccelerationRuntime
from .adapters import AdapterChoice, AdapterError
from .buckets import nearest_bucket
from .change_guidance import change_guided, change_scale
from .conditioning import GLYPH_BOX_THRESHOLD, GLYPH_INDEX, glyph_strip, word_to_write
from .errors import EditCancelled
from .glyph_guidance import glyph_guided
from .images import fit_to_bucket
from .lora import AdapterGate, adapts_text_encoder
from .model_info import MAX_GLYPH_GUIDANCE, MAX_REFERENCES, ModelInfo
from .preserve import changed_region, paste_back, region_box

# A requested size above this many times the model's native area is generated at the nearest bucket and resized:
# FLUX.1 Kontext [dev] (1 MP native) runs every size up to 1440² as asked; the 256² default model does not.
NATIVE_AREA_FACTOR = 2.1

# on_step(step, total_steps, preview) -> False to stop the run after this step. ``preview()`` renders a small JPEG
# of the current (noisy) latents, at a fraction of a full decode's cost; call it only when a preview is wanted.
StepCallback = Callable[[int, int, Callable[[], bytes]], bool | None]




class MultiReferenceKontextPipeline(FluxKontextPipeline):
    """FluxKontextPipeline that takes up to four context images, the i-th at RoPE index i, and, for models
    trained with it, a glyph strip at ``GLYPH_INDEX`` (set ``glyph_image`` on the per-call pipeline).

    With one image it computes exactly what the stock pipeline does. With several (passed as a list, all of one
    size), their tokens follow each other after the target's, each block with its own first id coordinate.
    ``context_latents`` keeps the first context image's packed tokens of the last call (for paste-back),
    ``glyph_latents`` the glyph strip's (for glyph guidance).
    """

    glyph_image: Image.Image | None = None
    context_latents: torch.Tensor | None = None
    glyph_latents: torch.Tensor | None = None

    def prepare_latents(self, image, batch_size, num_channels_latents, height, width, dtype, device, generator,
                        latents=None):  # fmt: skip
        latents, image_latents, latent_ids, image_ids = self._context_latents(
            image, batch_size, num_channels_latents, height, width, dtype, device, generator, latents
        )
        if image_latents is not None:
            self.context_latents = image_latents[:, : latent_ids.shape[0]]
        if self.glyph_image is None:
            return latents, image_latents, latent_ids, image_ids
        glyph_tokens, glyph_ids = self._glyph_latents(batch_size, num_channels_latents, dtype, device, generator)
        self.glyph_latents = glyph_tokens[:1]
        if image_latents is None:
            return latents, glyph_tokens, latent_ids, glyph_ids
        return latents, torch.cat([image_latents, glyph_tokens], dim=1), latent_ids, torch.cat([image_ids, glyph_ids])

    def _glyph_latents(self, batch_size, num_channels_latents, dtype, device, generator):
        width, height = self.glyph_image.size
        pixels = self.image_processor.preprocess(self.glyph_image, height=height, width=width)
        glyph = self._encode_vae_image(pixels.to(device=device, dtype=dtype), generator)
        glyph = torch.cat([glyph] * batch_size)
        h, w = glyph.shape[2:]
        tokens = self._pack_latents(glyph, batch_size, num_channels_latents, h, w)
        ids = self._prepare_latent_image_ids(batch_size, h // 2, w // 2, device, dtype)
        ids[..., 0] = GLYPH_INDEX
        return tokens, ids

    def _context_latents(self, image, batch_size, num_channels_latents, height, width, dtype, device, generator,
                         latents=None):  # fmt: skip
        if image is None or batch_size != 1 or image.shape[0] == 1:
            return super().prepare_latents(image, batch_size, num_channels_latents, height, width, dtype, device,
                                           generator, latents)  # fmt: skip
        blocks, ids = [], []
        for index in range(image.shape[0]):
            latents_out, block, latent_ids, block_ids = super().prepare_latents(
                image[index : index + 1], 1, num_channels_latents, height, width, dtype, device, generator, latents
            )
            latents = latents_out  # the noise is drawn once, on the first call; later calls reuse it
            block_ids[..., 0] = index + 1
            blocks.append(block)
            ids.append(block_ids)
        return latents, torch.cat(blocks, dim=1), latent_ids, torch.cat(ids, dim=0)


class KontextEngine:
    def __init__(self, pipeline: FluxKontextPipeline, info: ModelInfo, acceleration: AccelerationOptions | None = None,
                 adapters: Sequence[str] = ()):  # fmt: skip
        """``adapters``: the names of the LoRA adapters loaded into ``pipeline`` (engine/lora.py), all inactive."""
        self.pipeline = pipeline
        self.info = info
        self.pipeline.set_progress_bar_config(disable=True)
        self.runtime = AccelerationRuntime(acceleration)  # prompt cache, step-cache context, turn-taking
        self.adapters = AdapterGate(pipeline, adapters) if adapters else None
        self._adapted_text = bool(adapters) and adapts_text_encoder(pipeline)

    @property
    def device(self) -> torch.device:
        if self.runtime.options.offload != "none":  # the weights wait in CPU memory; the work runs here
            return self.pipeline._execution_device
        return self.pipeline.transformer.device

    @property
    def multiple(self) -> int:
        """Output sides are multiples of this (VAE downsampling × 2×2 patches)."""
        return self.pipeline.vae_scale_factor * 2

    def output_size(
        self, images: list[Image.Image], *, aspect_ratio: float | None = None, size: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """The (width, height) of the result: explicit size, else the bucket for the aspect ratio or first image."""
        if size is not None:
            if size[0] < self.multiple or size[1] < self.multiple or size[0] % self.multiple or size[1] % self.multiple:
                raise ValueError(f"size must be positive multiples of {self.multiple}, not {size[0]}x{size[1]}")
            return size
        if aspect_ratio is not None:
            return nearest_bucket(int(aspect_ratio * 1000), 1000, self.info.buckets)
        if images:
            return nearest_bucket(*images[0].size, self.info.buckets)
        return nearest_bucket(1, 1, self.info.buckets)

    def _sampling_size(self, output_size: tuple[int, int]) -> tuple[int, int]:
        """The size the model samples at for a given output size (see NATIVE_AREA_FACTOR)."""
        width, height = output_size
        if width * height <= NATIVE_AREA_FACTOR * self.info.native_area:
            return output_size
        return nearest_bucket(width, height, self.info.buckets)

    def edit(
        self,
        images: list[Image.Image],
        prompt: str,
        *,
        seed: int,
        steps: int,
        guidance: float,
        aspect_ratio: float | None = None,
        size: tuple[int, int] | None = None,
        on_step: StepCallback | None = None,
        preserve: float | None = None,
        glyph_guidance: float | None = None,
        loras: AdapterChoice = (),
    ) -> Image.Image:
        """Edit ``images`` as ``prompt`` asks (or generate from the prompt alone when ``images`` is empty).

        ``images[0]`` is the image to edit; further images (up to four in all) are extra references. ``preserve``
        is the paste-back threshold (preserve.py): None takes the model's default, 0 turns it off.
        ``glyph_guidance`` is the scale of an aligned model's glyph guidance (glyph_guidance.py): None takes the
        model's, 1 is plain sampling; a model without an aligned canvas has nothing to guide. ``loras`` are the
        (name, scale) pairs of loaded adapters to apply (engine/lora.py); empty: the base model. The same arguments
        give the same pixels on the same device and build.
        """
        if len(images) > MAX_REFERENCES:
            raise ValueError(f"at most {MAX_REFERENCES} context images")
        if glyph_guidance is not None and not 0 <= glyph_guidance <= MAX_GLYPH_GUIDANCE:
            raise ValueError(f"glyph_guidance must be 0 or more and at most {MAX_GLYPH_GUIDANCE:g}, "
                             f"not {glyph_guidance}")
        loras = tuple((str(name), float(scale)) for name, scale in loras)
        if loras and self.adapters is None:
            raise AdapterError(f"LoRA {loras[0][0]!r} was asked for, but this engine has no LoRA adapters loaded")
        output = self.output_size(images, aspect_ratio=aspect_ratio, size=size)
        width, height = self._sampling_size(output)
        context = [fit_to_bucket(image, (width, height)) for image in images]
        pipeline = self._pipeline_for_one_call()
        layout = self.info.glyph_context
        if layout:
            pipeline.glyph_image = glyph_strip(prompt, width, height, layout)  # an aligned canvas starts blank
        # An aligned canvas needs the box where the word goes: a first pass on the blank canvas finds it (the largest
        # region it changes), a second pass, same noise, writes the word drawn there.
        placing = layout == "aligned" and bool(context) and word_to_write(prompt) is not None
        total_steps = steps * (2 if placing else 1)
        done_steps, stopped = 0, False

        def step_end(pipeline, index, timestep, tensors):
            nonlocal stopped

            def preview() -> bytes:
                return self._preview(tensors["latents"], (width, height))

            if on_step is not None and on_step(done_steps + index + 1, total_steps, preview) is False:
                stopped = pipeline._interrupt = True
            return {}

        max_sequence_length = self.info.text_length(prompt, pipeline.tokenizer_2)
        preserve = self.info.preserve if preserve is None else preserve
        glyph_guidance = self.info.glyph_guidance if glyph_guidance is None else glyph_guidance
        variant = loras if self._adapted_text else ()  # cached prompt embeddings depend on text-encoder adapters
        # The adapters are the shared modules' state: held from the prompt encoding to the last decode.
        with self.adapters.active(loras) if self.adapters else contextlib.nullcontext():
            true_cfg = {}  # classifier-free guidance against the empty prompt, for models trained for it
            if self.info.guidance_mode == "cfg" and guidance > 1:
                negative = self.runtime.prompt_arguments(pipeline, "", max_sequence_length, negative=True,
                                                         variant=variant)  # fmt: skip
                true_cfg = dict(true_cfg_scale=guidance, **negative)
            prompt_arguments = self.runtime.prompt_arguments(pipeline, prompt, max_sequence_length, variant=variant)

            def sample() -> torch.Tensor:
                latents = pipeline(
                    image=(context[0] if len(context) == 1 else context) if context else None,
                    **prompt_arguments,
                    height=height,
                    width=width,
                    max_area=width * height,
                    _auto_resize=False,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=torch.Generator("cpu").manual_seed(seed % 2**64),
                    max_sequence_length=max_sequence_length,
                    callback_on_step_end=step_end,
                    output_type="latent",
                    **true_cfg,
                ).images
                if stopped:
                    raise EditCancelled
                return latents

            # a "change" model's guidance scales how far the edit moves from the input (change_guidance.py)
            changing = self.info.guidance_mode == "change" and bool(context)
            with self.runtime.session(pipeline), change_guided(pipeline, change_scale(guidance) if changing else 1.0):
                result = self._decode(pipeline, sample(), width, height)
                context_decode = None
                if placing:
                    context_decode = self._decode(pipeline, pipeline.context_latents, width, height)
                    box = region_box(changed_region(result, context_decode, GLYPH_BOX_THRESHOLD))
                    if box is not None:
                        blank_canvas = pipeline.glyph_latents
                        pipeline.glyph_image = glyph_strip(prompt, width, height, layout, box=box)
                        done_steps = steps
                        with glyph_guided(pipeline, blank_canvas, glyph_guidance):
                            result = self._decode(pipeline, sample(), width, height)
                if preserve and context:
                    if context_decode is None:
                        context_decode = self._decode(pipeline, pipeline.context_latents, width, height)
                    result = paste_back(result, context[0], context_decode, threshold=preserve)
        return result if result.size == output else result.resize(output, Image.Resampling.LANCZOS)

    @torch.no_grad()
    def _decode(self, pipeline, latents: torch.Tensor, width: int, height: int) -> Image.Image:
        """Packed latent tokens -> PIL image, exactly as the pipeline's own ``output_type="pil"`` path."""
        latents = pipeline._unpack_latents(latents, height, width, pipeline.vae_scale_factor)
        latents = latents / pipeline.vae.config.scaling_factor + pipeline.vae.config.shift_factor
        pixels = pipeline.vae.decode(latents.to(pipeline.vae.dtype), return_dict=False)[0]
        return pipeline.image_processor.postprocess(pixels, output_type="pil")[0]

    @torch.no_grad()
    def _preview(self, latents: torch.Tensor, size: tuple[int, int], max_side: int = 64) -> bytes:
        """A small JPEG of the current (noisy) latent: decoded at reduced resolution, a fraction of a full decode."""
        width, height = size
        scale = self.pipeline.vae_scale_factor
        latents = FluxKontextPipeline._unpack_latents(latents[:1], height, width, scale)
        factor = max(1, round(max(width, height) / max_side))  # pool the latent so the decode is max_side pixels
        if factor > 1:
            latents = F.avg_pool2d(latents, factor)
        vae = self.pipeline.vae
        latents = latents.to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        pixels = vae.decode(latents, return_dict=False)[0]
        image = self.pipeline.image_processor.postprocess(pixels, output_type="pil")[0]
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        return buffer.getvalue()

    def _pipeline_for_one_call(self) -> FluxKontextPipeline:
        # The scheduler and the interrupt flag are per-call state; the weights are shared. A shallow pipeline per
        # call lets several worker threads run edits on one set of weights at the same time.
        components = dict(self.pipeline.components, scheduler=copy.deepcopy(self.pipeline.scheduler))
        pipeline = MultiReferenceKontextPipeline(**components)
        pipeline.set_progress_bar_config(disable=True)
        self.runtime.adopt(pipeline, self.pipeline)
        return pipeline
