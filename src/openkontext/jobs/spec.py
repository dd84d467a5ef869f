"""The job contract: what a task asks the model to compute, built by the API from a request and read by the worker.

A ``JobSpec`` is stored with its job (prompt and seed in their own columns, the rest as the ``params`` JSON) and is
the only thing the worker reads to run it: the same spec gives the same pixels, also after a crash and a re-run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

@dataclass(frozen=True)
class JobSpec:
    prompt: str
    seed: int  # chosen at submit when the client sent none, so a re-run computes the same image
    steps: int
    guidance: float
    safety_tolerance: int  # 0 strictest … 6; applies to the output image too
    output_format: str  # jpeg | png | webp (api/schemas.py)
    preserve: float | None = None  # paste-back threshold (engine/preserve.py); None: the model's default
    glyph_guidance: float | None = None  # glyph guidance scale (engine/glyph_guidance.py); None: the model's default
    aspect_ratio: float | None = None  # width / height of the result; None: the first input image's
    size: tuple[int, int] | None = None  # explicit (width, height) of the result (text to image at a size)
    loras: tuple[tuple[str, float], ...] = ()  # LoRA adapters (name, scale), scales resolved at submit; (): none

    def __post_init__(self):
        if self.size is not None:  # JSON gives back lists
            object.__setattr__(self, "size", tuple(self.size))
        object.__setattr__(self, "loras", tuple((str(name), float(scale)) for name, scale in self.loras))

    def params(self) -> dict[str, Any]:
        """Everything but prompt and seed, as the job row's ``params`` JSON (absent options left out)."""
        fields = asdict(self)
        del fields["prompt"], fields["seed"]
        fields["size"] = list(self.size) if self.size else None
        fields["loras"] = [list(pair) for pair in self.loras] or None
        return {name: value for name, value in fields.items() if value is not None}

    @classmethod
    def stored(cls, prompt: str, seed: int, params: dict[str, Any]) -> JobSpec:
        """The spec of a stored job. Keys this version does not know (written by a newer one) are ignored."""
        known = {name: value for name, value in params.items() if name in cls.__dataclass_fields__}
        return cls(prompt=prompt, seed=int(seed), **known)
