"""The engine: one loaded Kontext model, and ``edit()`` — images + instruction in, edited image out.

Sampling is diffusers' ``FluxKontextPipeline``: the context image is VAE-encoded, patchified and appended to the
target tokens along the sequence axis with RoPE index 1; each Euler step of the flow-matching scheduler slices the
prediction back to the target tokens. This module chooses the resolution bucket, seeds the noise, reports progress
per step and stops between steps when asked.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import FluxKontextPipeline
from PIL import Image

from .buckets import nearest_bucket
from .images import fit_to_bucket

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


class KontextEngine:
    def __init__(self, pipeline: FluxKontextPipeline, info: ModelInfo):
        self.pipeline = pipeline
        self.info = info
        self.pipeline.set_progress_bar_config(disable=True)

    @property
    def device(self) -> torch.device:
        return self.pipeline.transformer.device

    def output_size(
        self, images: list[Image.Image], *, aspect_ratio: float | None = None, size: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """The (width, height) bucket for a request: explicit size, else the aspect ratio, else the first image's."""
        if size is not None:
            multiple = self.pipeline.vae_scale_factor * 2  # the pipeline silently rounds other sizes down
            if size[0] < multiple or size[1] < multiple or size[0] % multiple or size[1] % multiple:
                raise ValueError(f"size must be positive multiples of {multiple}, not {size[0]}x{size[1]}")
            return size
        if aspect_ratio is not None:
            return nearest_bucket(int(aspect_ratio * 1000), 1000, self.info.buckets)
        if images:
            return nearest_bucket(*images[0].size, self.info.buckets)
        return nearest_bucket(1, 1, self.info.buckets)

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
        """Edit ``images[0]`` as ``prompt`` asks (or generate from the prompt alone when ``images`` is empty).

        The same arguments give the same pixels on the same device and build.
        """
        width, height = self.output_size(images, aspect_ratio=aspect_ratio, size=size)
        context = [fit_to_bucket(image, (width, height)) for image in images]
        stopped = False

        def step_end(pipeline, index, timestep, tensors):
            nonlocal stopped
            if on_step is not None and on_step(index + 1, steps, tensors["latents"]) is False:
                stopped = pipeline._interrupt = True
            return {}

        result = self._pipeline_for_one_call()(
            image=context[0] if context else None,
            prompt=prompt,
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
        return result

    def _pipeline_for_one_call(self) -> FluxKontextPipeline:
        # The scheduler and the interrupt flag are per-call state; the weights are shared. A shallow pipeline per
        # call lets several worker threads run edits on one set of weights at the same time.
        components = dict(self.pipeline.components, scheduler=copy.deepcopy(self.pipeline.scheduler))
        pipeline = FluxKontextPipeline(**components)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline
