"""The wire schemas: exactly BFL's field names, defaults and ranges (see docs/api.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_serializer

SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


class AlphaEditRequest(BaseModel):
    """``POST /v1/flux-bagel-alpha``: the alpha API doc's request."""

    # Unknown fields are ignored, as BFL's API does, so clients that send extra fields keep working.
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "prompt": "Change 'KELLAR' to 'SUMITH'", "input_image": "<base64 image>", "steps": 50, "guidance": 3.0,
    }]})  # fmt: skip

    prompt: str = Field(description="What to change in the image.", min_length=1)
    input_image: str = Field(
        description="The image to edit: base64 (a data: URL prefix is allowed) or an http(s) URL to fetch.",
        min_length=1,
    )
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="Seed for reproducibility; random if null.")
    guidance: float = Field(3.0, ge=0.1, le=99.0, allow_inf_nan=False, description="Prompt adherence vs. the input.")
    steps: int = Field(50, ge=1, le=150, description="Number of diffusion steps.")
    safety_tolerance: int = Field(2, ge=0, le=6, description="Moderation level: 0 strictest, 6 most permissive.")
    output_format: Literal["jpeg", "png"] = Field("jpeg", description="Format of the output image.")
    webhook_url: AnyHttpUrl | None = Field(None, max_length=2083, description="Called when the task ends.")
    webhook_secret: str | None = Field(None, max_length=512, description="Secret that signs the webhook call.")

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must contain text")
        return value


class SubmitResponse(BaseModel):
    id: str
    polling_url: str


class WebhookSubmitResponse(BaseModel):
    """BFL's submit response when a ``webhook_url`` was given (plus ``polling_url``, which BFL clients also read)."""

    id: str
    status: str
    webhook_url: str
    polling_url: str


class ResultResponse(BaseModel):
    """``GET /v1/get_result``: ``status`` is one of BFL's strings; ``result`` is set when Ready."""

    id: str
    status: Literal["Task not found", "Pending", "Request Moderated", "Content Moderated", "Ready", "Error"]
    result: dict[str, Any] | None = None
    progress: float | None = None
    details: dict[str, Any] | None = None
    preview: dict[str, Any] | None = None
    webhook_status: Literal["pending", "delivered", "failed"] | None = Field(
        None, description="Delivery state of the task's webhook call, when it has a webhook_url."
    )
    webhook_attempts: int | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_webhook(self, handler):
        # BFL's own fields are always present (null when empty); the webhook fields only for webhook tasks.
        data = handler(self)
        for name in ("webhook_status", "webhook_attempts"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]]
