"""Image sizes as people write them on a command line or in a setting: ``1024x768``, a list ``1024x1024,1184x880``."""

from __future__ import annotations


def parse_size(text: str, *, square: bool = False) -> tuple[int, int]:
    """``'1024x768'`` → ``(1024, 768)``; with ``square``, one number is a square's side: ``'256'`` is 256x256.

    Raises ``ValueError`` with a message that shows the expected form.
    """
    width, sep, height = text.strip().lower().partition("x")
    try:
        return (int(width), int(height)) if sep or not square else (int(width), int(width))
    except ValueError:
        raise ValueError(f"sizes look like 1024x1024, not {text.strip()!r}") from None


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``'1024x1024, 1184x880'`` → ``[(1024, 1024), (1184, 880)]``; empty parts are skipped."""
    return [parse_size(part) for part in text.split(",") if part.strip()]
