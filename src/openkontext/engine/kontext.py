"""The engine: one loaded Kontext model, and ``edit()`` — images + instruction in, edited image out.

Sampling is diffusers' ``FluxKontextPipeline``: each context image is VAE-encoded, patchified and appended to the
target tokens along the sequence axis; each Euler step of the flow-matching scheduler slices the prediction back to
the target tokens. The thin subclass below gives context image *i* its own RoPE index *i* (1…4), as in the Kontext
paper, where the stock pipeline takes one. This module chooses the resolution bucket, seeds the noise, reports
progress per step, renders cheap previews and stops between steps when asked.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import FluxKontextPipeline
from PIL import Image

from .acceleration import AccelerationOptions, EngineRuntime
from .buckets import nearest_bucket
from .images import fit_to_bucket

MAX_REFERENCES = 4
# A requested size above this many times the model's native area is generated at the nearest bucket and resized:
# FLUX.1 Kontext [dev] (1 MP native) runs every size up to 1440² as asked; the 256² default model does not.
NATIVE_AREA_FACTOR = 2.1

# on_step(step, total_steps, latents) -> False to stop the run after this step.
StepCallback = Callable[[int, int, torch.Tensor], bool | None]


class EditCancelled(Exception):
    """The step callback asked the run to stop."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    placeholder: bool  # True: random weights, the outputs mean nothing
    buckets: tuple[tuple[int, int], ...]
    max_sequence_length: int

    @property
    def native_area(self) -> int:
        return max(width * height for width, height in self.buckets)


class MultiReferenceKontextPipeline(FluxKontextPipeline):
    """FluxKontextPipeline that takes up to four context images, the i-th at RoPE index i.

    With one image it computes exactly what the stock pipeline does. With several (passed as a list, all of one
    size), their tokens follow each other after the target's, each block with its own first id coordinate.
    """

    def prepare_latents(self, image, batch_size, num_channels_latents, height, width, dtype, device, generator,
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
    def __init__(self, pipeline: FluxKontextPipeline, info: ModelInfo, acceleration: AccelerationOptions | None = None):
        self.pipeline = pipeline
        self.info = info
        self.pipeline.set_progress_bar_config(disable=True)
        self.runtime = EngineRuntime(acceleration)  # prompt cache, step-cache context, turn-taking

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

    def sampling_size(self, output_size: tuple[int, int]) -> tuple[int, int]:
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
    ) -> Image.Image:
        """Edit ``images`` as ``prompt`` asks (or generate from the prompt alone when ``images`` is empty).

        ``images[0]`` is the image to edit; further images (up to four in all) are extra references. The same
        arguments give the same pixels on the same device and build.
        """
        if len(images) > MAX_REFERENCES:
            raise ValueError(f"at most {MAX_REFERENCES} context images")
        output = self.output_size(images, aspect_ratio=aspect_ratio, size=size)
        width, height = self.sampling_size(output)
        context = [fit_to_bucket(image, (width, height)) for image in images]
        stopped = False

        def step_end(pipeline, index, timestep, tensors):
            nonlocal stopped
            if on_step is not None and on_step(index + 1, steps, tensors["latents"]) is False:
                stopped = pipeline._interrupt = True
            return {}

        pipeline = self._pipeline_for_one_call()
        with self.runtime.session(pipeline):
            result = pipeline(
                image=(context[0] if len(context) == 1 else context) if context else None,
                **self.runtime.prompt_arguments(pipeline, prompt, self.info.max_sequence_length),
                height=height,
                width=width,
                max_area=width * height,
                _auto_resize=False,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator("cpu").manual_seed(seed % 2**64),
                max_sequence_length=self.info.max_sequence_length,
                callback_on_step_end=step_end,
                output_type="pil",
            ).images[0]
        if stopped:
            raise EditCancelled
        return result if result.size == output else result.resize(output, Image.Resampling.LANCZOS)

    @torch.no_grad()
    def preview(self, latents: torch.Tensor, size: tuple[int, int], max_side: int = 64) -> bytes:
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
