"""Decoding untrusted image bytes, fitting images to resolution buckets, and encoding results."""

from __future__ import annotations

import base64
import binascii
import contextvars
import io
import re

from PIL import Image, ImageOps, UnidentifiedImageError

OUTPUT_FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}
ACCEPTED_INPUT_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}

_DATA_URL = re.compile(r"^data:(?P<mime>[\w/+.-]*)(?P<params>(;[\w=.+-]+)*);base64,", re.IGNORECASE)


class ImageInputError(ValueError):
    """The bytes given as an image cannot be used; the message says why, for the client."""


# Pillow warns (DecompressionBombWarning) when an image has more than Image.MAX_IMAGE_PIXELS pixels and raises
# DecompressionBombError above twice that. Inside decode_image our own ``max_pixels`` is the limit, so the warning is
# noise there — but silencing it with ``warnings.catch_warnings`` swaps the process-wide warning filters, which is not
# thread-safe: request threads decoding at once can leave a filter behind or drop warnings of unrelated threads.
# Pillow runs every one of its checks (open, seek, load; all plugins) through ``Image._decompression_bomb_check``, so
# that one function is wrapped, once, at import: while this thread (context) is inside decode_image it runs with
# ``error_only=True`` (the hard cap still raises, nothing is warned); everywhere else it is Pillow's own, unchanged.
def _hook_bomb_check() -> contextvars.ContextVar[bool]:
    installed = getattr(Image._decompression_bomb_check, "_openkontext_inside", None)
    if installed is not None:  # this module was reloaded: keep the one hook and its flag
        return installed
    original = Image._decompression_bomb_check
    inside: contextvars.ContextVar[bool] = contextvars.ContextVar("openkontext_inside_decode", default=False)

    def check(size: tuple[int, int], *, error_only: bool = False) -> None:
        original(size, error_only=error_only or inside.get())

    check._openkontext_inside = inside  # type: ignore[attr-defined]
    Image._decompression_bomb_check = check
    return inside


_inside_decode = _hook_bomb_check()


def decode_base64(data: str) -> bytes:
    """Base64 (standard or URL-safe, padded or not, optionally a ``data:`` URL) to bytes."""
    match = _DATA_URL.match(data)
    if match:
        data = data[match.end() :]
    try:  # what clients nearly always send, decoded without first copying a megabyte string three times
        raw = base64.b64decode(data, validate=True)
        if raw:
            return raw
    except (binascii.Error, ValueError):
        pass
    data = re.sub(r"\s+", "", data)
    if not data:
        raise ImageInputError("image is empty")
    data = data.replace("-", "+").replace("_", "/")
    data += "=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("not valid base64") from None


def image_format(raw: bytes) -> str:
    """The format of image bytes that ``decode_image`` accepted (from the header alone): jpeg, png or webp."""
    with Image.open(io.BytesIO(raw)) as image:
        return image.format.lower()


def decode_image(raw: bytes, *, max_pixels: int) -> Image.Image:
    """Open untrusted image bytes as an upright RGB image.

    The pixel count is checked from the header before any pixel is decoded, so a decompression bomb costs nothing.
    EXIF orientation is applied; transparency is composited onto white; animations use their first frame.
    """
    # ``max_pixels`` below is the limit, not Pillow's default MAX_IMAGE_PIXELS (≈ 89 M, a warning): see
    # _hook_bomb_check — thread-safe, unlike warnings.catch_warnings.
    inside = _inside_decode.set(True)
    try:
        image = Image.open(io.BytesIO(raw))
        if image.format not in ACCEPTED_INPUT_FORMATS:
            raise ImageInputError(f"unsupported image format {image.format}; send JPEG, PNG or WebP")
        width, height = image.size
        if width * height > max_pixels:
            raise ImageInputError(f"image is {width}x{height} pixels, more than the limit of {max_pixels}")
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
    except ImageInputError:
        raise
    except Image.DecompressionBombError:  # Pillow's hard cap, 2 × MAX_IMAGE_PIXELS, also read from the header
        limit = min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)
        raise ImageInputError(f"image has more pixels than the limit of {limit}") from None
    except UnidentifiedImageError:
        raise ImageInputError("data is not a decodable image (JPEG, PNG or WebP)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageInputError(f"image is corrupt or truncated ({type(exc).__name__})") from None
    finally:
        _inside_decode.reset(inside)
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clip.
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def fit_to_bucket(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to the bucket's exact (width, height); buckets are chosen by aspect so the stretch is a few percent."""
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def encode_image(image: Image.Image, output_format: str) -> bytes:
    pil_format, _ = OUTPUT_FORMATS[output_format]
    buffer = io.BytesIO()
    options = {"quality": 95} if pil_format in ("JPEG", "WEBP") else {}
    image.convert("RGB").save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def media_type(output_format: str) -> str:
    return OUTPUT_FORMATS[output_format][1]
