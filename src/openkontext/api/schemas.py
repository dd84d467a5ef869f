"""The wire schemas: exactly BFL's field names, defaults and ranges (see docs/api.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from ..engine.adapters import MAX_SCALE
from ..engine.buckets import parse_aspect_ratio
from ..engine.model_info import MAX_GLYPH_GUIDANCE
from ..statuses import TaskStatus

SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


class LoraChoice(BaseModel):
    """One LoRA adapter a request applies: a name from the server's list (``GET /health``) and its strength."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="An adapter name from GET /health's 'loras'.")
    scale: float | None = Field(
        None, ge=-MAX_SCALE, le=MAX_SCALE, allow_inf_nan=False,
        description="Strength: 0 is the base model, 1 the adapter as trained; null: the server's default for it.",
    )


class TaskRequest(BaseModel):
    """Fields every submit route shares."""

    # Unknown fields are ignored, as BFL's API does, so clients that send extra fields keep working.
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(description="What to change in the image (or, without an image, what to draw).", min_length=1)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="Seed for reproducibility; random if null.")
    guidance: float = Field(3.0, ge=0.1, le=99.0, allow_inf_nan=False, description="Prompt adherence vs. the input.")
    steps: int = Field(50, ge=1, le=150, description="Number of diffusion steps.")
    safety_tolerance: int = Field(2, ge=0, le=6, description="Moderation level: 0 strictest, 6 most permissive.")
    webhook_url: AnyHttpUrl | None = Field(None, max_length=2083, description="Called when the task ends.")
    webhook_secret: str | None = Field(None, max_length=512, description="Secret that signs the webhook call.")
    preserve: float | None = Field(
        None, ge=0.0, le=1.0, allow_inf_nan=False,
        description="OpenKontext extension: paste-back threshold (0 off; null: the server's default). Where the "
        "output and the input agree within it, the input's own pixels are kept.",
    )
    glyph_guidance: float | None = Field(
        None, ge=0.0, le=MAX_GLYPH_GUIDANCE, allow_inf_nan=False,
        description="OpenKontext extension: for a model that draws the word to write on a glyph canvas, how strongly "
        "the drawn letters shape the written word (1: plain sampling; null: the server's default). Other models "
        "ignore it.",
    )
    loras: list[LoraChoice] | None = Field(
        None, max_length=8,
        description="OpenKontext extension: LoRA adapters to apply, by name (the server's list: GET /health); "
        "null or empty: the base model.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must contain text")
        return value

    def context_images(self) -> list[str]:
        return []


IMAGE_DESCRIPTION = "Base64 image (a data: URL prefix is allowed) or an http(s) URL to fetch."


class AlphaEditRequest(TaskRequest):
    """``POST /v1/flux-bagel-alpha``: the alpha API doc's request (an input image is required)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "prompt": "Change 'KELLAR' to 'SUMITH'", "input_image": "<base64 image>", "steps": 50, "guidance": 3.0,
    }]})  # fmt: skip

    input_image: str = Field(description="The image to edit. " + IMAGE_DESCRIPTION, min_length=1)
    output_format: Literal["jpeg", "png"] = Field("jpeg", description="Format of the output image.")

    def context_images(self) -> list[str]:
        return [self.input_image]


class KontextRequest(TaskRequest):
    """``POST /v1/flux-kontext-pro`` and ``/v1/flux-kontext-max``: BFL's production schema.

    Without ``input_image`` the request is text-to-image. ``steps`` and ``guidance`` are extensions BFL's production
    routes do not have.
    """

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "prompt": "Put this character on a beach", "input_image": "<base64 image>", "aspect_ratio": "16:9",
    }]})  # fmt: skip

    input_image: str | None = Field(None, description="The image to edit. " + IMAGE_DESCRIPTION, min_length=1)
    input_image_2: str | None = Field(None, description="Extra reference image. " + IMAGE_DESCRIPTION, min_length=1)
    input_image_3: str | None = Field(None, description="Extra reference image. " + IMAGE_DESCRIPTION, min_length=1)
    input_image_4: str | None = Field(None, description="Extra reference image. " + IMAGE_DESCRIPTION, min_length=1)
    aspect_ratio: str | None = Field(
        None, description="Output aspect ratio, '21:9' … '9:21'; default: the input image's (1:1 without one)."
    )
    output_format: Literal["jpeg", "png", "webp"] = Field("png", description="Format of the output image.")
    prompt_upsampling: bool = Field(
        False, description="Accepted for compatibility; OpenKontext uses the prompt as given (see docs/api.md)."
    )

    @field_validator("aspect_ratio")
    @classmethod
    def _aspect_ratio_in_range(cls, value: str | None) -> str | None:
        if value is not None:
            parse_aspect_ratio(value)
        return value

    @model_validator(mode="after")
    def _references_follow_the_first_image(self):
        extra = [self.input_image_2, self.input_image_3, self.input_image_4]
        if any(extra) and not self.input_image:
            raise ValueError("input_image_2..4 are extra references: send input_image too")
        return self

    def context_images(self) -> list[str]:
        images = [self.input_image, self.input_image_2, self.input_image_3, self.input_image_4]
        return [image for image in images if image]


class TextToImageRequest(TaskRequest):
    """``POST /v1/flux-dev``: text-to-image at an explicit size, as BFL's FLUX.1 [dev] route."""

    width: int = Field(1024, ge=256, le=1440, multiple_of=32, description="Output width in pixels.")
    height: int = Field(768, ge=256, le=1440, multiple_of=32, description="Output height in pixels.")
    steps: int = Field(28, ge=1, le=150, description="Number of diffusion steps.")
    output_format: Literal["jpeg", "png", "webp"] = Field("jpeg", description="Format of the output image.")
    prompt_upsampling: bool = Field(False, description="Accepted for compatibility; the prompt is used as given.")


class SubmitResponse(BaseModel):
    id: str
    polling_url: str


class WebhookSubmitResponse(BaseModel):
    """BFL's submit response when a ``webhook_url`` was given (plus ``polling_url``, which BFL clients also read)."""

    id: str
    status: TaskStatus
    webhook_url: str
    polling_url: str


class ResultResponse(BaseModel):
    """``GET /v1/get_result``: ``status`` is one of BFL's strings; ``result`` is set when Ready."""

    id: str
    status: TaskStatus
    result: dict[str, Any] | None = None
    progress: float | None = None
    queue_position: int | None = Field(None, description="While queued: 1 is next to run.")
    step: int | None = Field(None, description="While running: steps done.")
    steps: int | None = Field(None, description="While running: steps in all.")
    details: dict[str, Any] | None = None
    preview: dict[str, Any] | None = None
    webhook_status: Literal["pending", "delivered", "failed"] | None = Field(
        None, description="Delivery state of the task's webhook call, when it has a webhook_url."
    )
    webhook_attempts: int | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_webhook(self, handler):
        # BFL's own fields are always present (null when empty); our extensions only when they apply.
        data = handler(self)
        for name in ("webhook_status", "webhook_attempts", "queue_position", "step", "steps"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class TaskList(BaseModel):
    tasks: list[ResultResponse]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next (older) page; null at the end.")


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]]
