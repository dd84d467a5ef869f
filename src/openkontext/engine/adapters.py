"""LoRA adapters as the settings and requests name them: ``NAME=PATH[:SCALE]`` at start, ``(name, scale)`` per request.

No torch here: the API validates a request's ``loras`` against the configured adapters without loading a model.
Loading them into a pipeline and switching them per request is ``engine/lora.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_SCALE = 4.0  # |scale| accepted per request and in settings; hosted Kontext-LoRA endpoints allow up to 4

# A request's adapters, as the job stores them and the engine takes them: (name, scale) pairs in the asked order.
AdapterChoice = tuple[tuple[str, float], ...]


class AdapterError(ValueError):
    """An adapter setting or choice that cannot be honoured; the message says which and why."""


@dataclass(frozen=True)
class Adapter:
    """One configured LoRA: a name requests use, its local .safetensors file, the scale used when a request gives
    none."""

    name: str
    path: Path
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Adapter:
        """``NAME=PATH[:SCALE]``, or ``PATH[:SCALE]`` (named after the file: ``relight.safetensors`` → ``relight``).

        The scale is split off the last ``:`` only when what follows is a number, so paths may contain colons.
        """
        text = str(text).strip()
        name, sep, rest = text.partition("=")
        if not sep or "/" in name or "\\" in name:  # no NAME= part (an '=' inside a path is not one)
            name, rest = "", text
        path, scale = rest, 1.0
        head, colon, tail = rest.rpartition(":")
        if colon and head:
            try:
                scale = float(tail)
            except ValueError:
                pass
            else:
                path = head
        if not path:
            raise AdapterError(f"LoRA {text!r}: expected NAME=PATH[:SCALE] (a .safetensors file)")
        path = Path(path).expanduser()
        name = name.strip() or path.stem
        adapter = cls(name=name, path=path, scale=scale)
        adapter.check()
        return adapter

    def check(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise AdapterError(f"LoRA name {self.name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        check_scale(self.scale, f"LoRA {self.name!r}")
        if self.path.suffix.lower() != ".safetensors":
            raise AdapterError(f"LoRA {self.name!r}: {self.path} is not a .safetensors file (pickled .pt/.bin "
                               "adapters are not loaded: they can run code)")  # fmt: skip

    def describe(self) -> dict:
        """What /health shows: the name and the default scale (never the server's file path)."""
        return {"name": self.name, "scale": self.scale}


def check_scale(scale: float, what: str) -> None:
    if not math.isfinite(scale) or abs(scale) > MAX_SCALE:
        raise AdapterError(f"{what}: scale must be between -{MAX_SCALE:g} and {MAX_SCALE:g}, not {scale}")


def parse_adapters(texts: Iterable[str | Adapter]) -> tuple[Adapter, ...]:
    """Settings' adapters, each parsed; names must be distinct."""
    adapters = tuple(text if isinstance(text, Adapter) else Adapter.parse(text) for text in texts)
    seen: set[str] = set()
    for adapter in adapters:
        if adapter.name in seen:
            raise AdapterError(f"LoRA name {adapter.name!r} is configured twice; give each adapter its own NAME=")
        seen.add(adapter.name)
    return adapters


def choose(adapters: Sequence[Adapter], requested: Iterable[tuple[str, float | None]]) -> AdapterChoice:
    """A request's ``(name, scale or None)`` pairs → the choice to run: scales defaulted from the configuration.

    Raises ``AdapterError`` for a name that is not configured (the message lists the valid ones), a name asked twice,
    or a scale out of range.
    """
    by_name = {adapter.name: adapter for adapter in adapters}
    choice: list[tuple[str, float]] = []
    for name, scale in requested:
        if name not in by_name:
            valid = ", ".join(sorted(by_name)) if by_name else "none: this server has no LoRA adapters configured"
            raise AdapterError(f"unknown LoRA {name!r}; valid names: {valid}")
        if any(name == chosen for chosen, _ in choice):
            raise AdapterError(f"LoRA {name!r} is listed twice")
        scale = by_name[name].scale if scale is None else float(scale)
        check_scale(scale, f"LoRA {name!r}")
        choice.append((name, scale))
    return tuple(choice)
