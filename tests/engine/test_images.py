"""Decoding untrusted image bytes: every format we accept, every way an upload can be odd, and the ways it can be bad.

All inputs are real encoded bytes made with Pillow; nothing of ours is mocked.
"""

from __future__ import annotations

import base64
import io
import struct
import sys
import threading
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from openkontext.engine.images import (
    ImageInputError,
    decode_base64,
    decode_image,
    encode_image,
    media_type,
    to_rgb,
)

LIMIT = 10_000_000


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


# --- formats --------------------------------------------------------------------------------------------------------


def smooth(width: int, height: int, seed: int = 0) -> Image.Image:
    """Noise upscaled: structure a lossy codec keeps, so decoded pixels can be compared with the source."""
    return noise(width // 4, height // 4, seed).resize((width, height), Image.Resampling.BILINEAR)


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"),
    [("PNG", {}, 0), ("WEBP", {"lossless": True}, 0), ("JPEG", {"quality": 95}, 10), ("WEBP", {"quality": 90}, 10)],
)
def test_common_formats_decode_to_the_source_rgb_pixels(fmt, options, tolerance):
    source = smooth(40, 24)
    image = decode_image(encode(source, fmt, **options), max_pixels=LIMIT)
    assert image.mode == "RGB" and image.size == (40, 24)
    difference = np.abs(pixels(image) - pixels(source))
    if tolerance == 0:
        assert difference.max() == 0
    else:  # lossy: close (an unrelated image differs by ~60 on average)
        assert difference.mean() < tolerance
        assert np.abs(pixels(image) - pixels(smooth(40, 24, seed=1))).mean() > 3 * tolerance


def test_smooth_jpeg_is_close_to_its_source():
    gradient = np.zeros((32, 64, 3), dtype=np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
    gradient[..., 2] = 128
    image = decode_image(encode(Image.fromarray(gradient), "JPEG", quality=95), max_pixels=LIMIT)
    assert np.abs(pixels(image) - gradient.astype(int)).max() <= 8


@pytest.mark.parametrize(("fmt", "options"), [("PNG", {}), ("WEBP", {"lossless": True})])
def test_transparent_pixels_composite_onto_white(fmt, options):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red everywhere …
    rgba[:4, :, 3] = 255  # … opaque in the top half,
    rgba[4:6, :, 3] = 0  # fully transparent in rows 4-5,
    rgba[6:, :, 3] = 128  # half transparent at the bottom.
    image = decode_image(encode(Image.fromarray(rgba, "RGBA"), fmt, **options), max_pixels=LIMIT)
    assert image.mode == "RGB"
    got = pixels(image)
    assert (got[:4] == (200, 0, 0)).all()
    assert (got[4:6] == (255, 255, 255)).all()  # white, not black
    assert np.abs(got[6:] - (228, 128, 128)).max() <= 2  # 50 % over white


def test_palette_png_with_transparent_index():
    image = Image.new("P", (6, 4), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    for x in range(3, 6):
        for y in range(4):
            image.putpixel((x, y), 1)
    decoded = decode_image(encode(image, "PNG", transparency=1), max_pixels=LIMIT)
    got = pixels(decoded)
    assert decoded.mode == "RGB"
    assert (got[:, :3] == (255, 0, 0)).all()
    assert (got[:, 3:] == (255, 255, 255)).all()  # the transparent palette entry (blue) is white


def test_grayscale_l_becomes_grey_rgb():
    grey = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
    decoded = decode_image(encode(Image.fromarray(grey, "L"), "PNG"), max_pixels=LIMIT)
    assert decoded.mode == "RGB"
    got = pixels(decoded)
    for channel in range(3):
        assert np.array_equal(got[..., channel], grey.astype(int))


def test_16_bit_grayscale_png_is_scaled_not_clipped():
    values = np.array([[0, 255, 256, 4096], [32768, 40000, 65280, 65535]], dtype=np.uint16)
    raw = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(raw)).mode.startswith("I")  # really a 16-bit file
    got = pixels(decode_image(raw, max_pixels=LIMIT))[..., 0]
    expected = values.astype(float) / 256  # 16-bit → 8-bit
    assert np.abs(got - expected).max() <= 1, got
    # Clipping would give 255 for everything above 255: mid-grey must stay mid-grey.
    assert 120 <= got[1, 0] <= 136 and got[0, 3] <= 17


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    raw = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(raw)).mode == "CMYK"
    decoded = decode_image(raw, max_pixels=LIMIT)
    assert decoded.mode == "RGB"
    red, green, blue = pixels(decoded)[8, 8]
    assert red > 230 and green < 30 and blue < 30


# Stored image: 48 wide, 24 tall, a red 8x8 block in its stored top-left corner, blue elsewhere.
# (EXIF orientation, pixel position of the top-left block after the viewer applies it, upright size)
ORIENTATIONS = [
    (1, "top-left", (48, 24)),
    (3, "bottom-right", (48, 24)),  # rotated 180°
    (6, "top-right", (24, 48)),  # stored rotated: rotate 90° clockwise to show
    (8, "bottom-left", (24, 48)),  # rotate 90° counter-clockwise to show
]


@pytest.mark.parametrize(("orientation", "corner", "size"), ORIENTATIONS)
def test_exif_orientation_is_applied(orientation, corner, size):
    stored = np.zeros((24, 48, 3), dtype=np.uint8)
    stored[..., 2] = 255
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(raw, max_pixels=LIMIT)
    assert decoded.size == size
    got = pixels(decoded)
    h, w = got.shape[:2]
    corners = {
        "top-left": got[2, 2],
        "top-right": got[2, w - 3],
        "bottom-left": got[h - 3, 2],
        "bottom-right": got[h - 3, w - 3],
    }
    for name, (red, _, blue) in corners.items():
        if name == corner:
            assert red > 200 and blue < 60, (name, corners)
        else:
            assert red < 60 and blue > 200, (name, corners)


@pytest.mark.parametrize(("fmt", "options"), [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})])
def test_animation_uses_its_first_frame(fmt, options):
    frames = [Image.new("RGB", (12, 10), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    raw = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    assert getattr(Image.open(io.BytesIO(raw)), "n_frames", 1) == 3  # really animated (APNG for PNG)
    decoded = decode_image(raw, max_pixels=LIMIT)
    assert decoded.size == (12, 10) and decoded.mode == "RGB"
    assert tuple(pixels(decoded)[5, 5]) == (255, 0, 0)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_one_by_one_image_decodes(fmt):
    decoded = decode_image(encode(Image.new("RGB", (1, 1), (10, 20, 30)), fmt), max_pixels=LIMIT)
    assert decoded.size == (1, 1) and decoded.mode == "RGB"


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_image_is_refused(fmt, keep):
    raw = encode(noise(64, 64), fmt)
    with pytest.raises(ImageInputError, match="corrupt or truncated"):
        decode_image(raw[: int(len(raw) * keep)], max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_cut_inside_its_header_is_refused(fmt):
    with pytest.raises(ImageInputError):
        decode_image(encode(noise(64, 64), fmt)[:30], max_pixels=LIMIT)


NOT_IMAGES = {
    "random bytes": np.random.default_rng(7).bytes(2000),
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<rect width="10" height="10" fill="red"/></svg>',
    "html": b"<!DOCTYPE html><html><head><title>x</title></head><body><img src='a.png'></body></html>",
    "text": b"hello, this is not an image",
    "empty": b"",
}


@pytest.mark.parametrize("name", NOT_IMAGES)
def test_non_images_are_refused_with_a_clear_message(name):
    with pytest.raises(ImageInputError) as caught:
        decode_image(NOT_IMAGES[name], max_pixels=LIMIT)
    message = str(caught.value)
    assert "not a decodable image" in message and "JPEG, PNG or WebP" in message


def test_unsupported_format_is_named():
    with pytest.raises(ImageInputError, match="unsupported image format ICO"):
        decode_image(encode(Image.new("RGB", (16, 16)), "ICO"), max_pixels=LIMIT)


def png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR claims ``width`` x ``height`` (CRC fixed, so the header itself is valid)."""
    raw = bytearray(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert raw[12:16] == b"IHDR"
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (3000, 2000),  # 6 MP: over our limit, under Pillow's own warning threshold
        (10000, 9500),  # 95 MP: over Pillow's DecompressionBombWarning threshold (~89 MP)
        (30000, 30000),  # 900 MP: over Pillow's DecompressionBombError threshold (~179 MP)
        (65535, 65535),
    ],
)
def test_pixel_limit_is_enforced_from_the_header(width, height):
    raw = png_claiming(width, height)
    assert Image.open(io.BytesIO(png_claiming(3, 2))).size == (3, 2)  # the patch itself makes a readable header
    started = time.perf_counter()
    with pytest.raises(ImageInputError) as caught:
        decode_image(raw, max_pixels=4_000_000)
    # The file holds one pixel: had the decoder run, it would report truncation, not the limit.
    assert "limit of 4000000" in str(caught.value)
    assert time.perf_counter() - started < 1.0


def test_claimed_size_within_the_limit_is_decoded_and_found_truncated():
    with pytest.raises(ImageInputError, match="corrupt or truncated"):
        decode_image(png_claiming(300, 200), max_pixels=4_000_000)


def test_our_limit_governs_not_pillows_global_default(monkeypatch):
    """A caller allowing more than Pillow's MAX_IMAGE_PIXELS (the CLI allows 100 MP) gets its own limit."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the same situation, scaled down
    allowed = decode_image(encode(noise(40, 40), "PNG"), max_pixels=10_000)  # 1600 px: over Pillow's, under ours
    assert allowed.size == (40, 40)
    with pytest.raises(ImageInputError, match="limit"):
        decode_image(encode(noise(100, 60), "PNG"), max_pixels=10_000)  # over both


# --- threads: Pillow's DecompressionBombWarning without the process-wide warning filters ------------------------------


def _forbidden(name: str):
    def call(*args, **kwargs):
        raise AssertionError(f"decode_image called warnings.{name}: the warning filters are process-wide")

    return call


def test_decode_over_pillows_warning_threshold_neither_warns_nor_touches_the_warning_filters(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns above 1000 px and refuses above 2000
    over_warning = encode(noise(40, 40), "PNG")  # 1600 px
    over_cap = encode(noise(50, 50), "PNG")  # 2500 px
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning out of decode_image would be raised here
        filters, snapshot = warnings.filters, list(warnings.filters)
        with monkeypatch.context() as patch:  # undone before pytest's own teardown uses catch_warnings again
            for name in ("catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"):
                patch.setattr(warnings, name, _forbidden(name))
            assert decode_image(over_warning, max_pixels=10_000).size == (40, 40)
            with pytest.raises(ImageInputError, match="more pixels than the limit of 2000"):  # the hard cap stays
                decode_image(over_cap, max_pixels=10_000)
        assert warnings.filters is filters and warnings.filters == snapshot
    with pytest.warns(Image.DecompressionBombWarning):  # outside decode_image Pillow still warns as always
        Image.open(io.BytesIO(over_warning))


def test_concurrent_decodes_leave_another_threads_warnings_alone(monkeypatch):
    """Request threads decode images over Pillow's warning threshold while another thread opens such images with
    Pillow directly and relies on its normal warning: every one of its warnings arrives, none from the decoders."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    raw = encode(noise(40, 40), "PNG")  # 1600 px: over the (patched) warning threshold, under the hard cap
    decoders, rounds = 4, 150
    start = threading.Barrier(decoders + 1)
    failures: list[BaseException] = []

    def guarded(work):
        def run():
            try:
                start.wait()
                for _ in range(rounds):
                    work()
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        return run

    def decode():
        assert decode_image(raw, max_pixels=10_000).size == (40, 40)

    def open_with_pillow():
        Image.open(io.BytesIO(raw))

    switch = sys.getswitchinterval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        sys.setswitchinterval(1e-5)  # switch threads often, so any shared-state race shows
        try:
            threads = [threading.Thread(target=guarded(decode)) for _ in range(decoders)]
            threads.append(threading.Thread(target=guarded(open_with_pillow)))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
        finally:
            sys.setswitchinterval(switch)
        assert warnings.filters == filters
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    bombs = [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert len(bombs) == rounds  # the observer's own, each once


# --- base64 ---------------------------------------------------------------------------------------------------------


SAMPLE = bytes(range(256)) + b"\xfb\xff\xfe\xfb"  # encodes with '+' and '/' and needs padding


def test_standard_base64():
    text = base64.b64encode(SAMPLE).decode()
    assert "+" in text and "/" in text and text.endswith("=")
    assert decode_base64(text) == SAMPLE


def test_url_safe_unpadded_base64():
    text = base64.urlsafe_b64encode(SAMPLE).decode().rstrip("=")
    assert "-" in text and "_" in text and len(text) % 4
    assert decode_base64(text) == SAMPLE


@pytest.mark.parametrize(
    "prefix", ["data:image/png;base64,", "DATA:IMAGE/PNG;BASE64,", "data:image/webp;name=a.webp;base64,", "data:;base64,"]
)
def test_data_url_prefix_is_stripped(prefix):
    assert decode_base64(prefix + base64.b64encode(SAMPLE).decode()) == SAMPLE


def test_whitespace_and_line_breaks_are_ignored():
    text = base64.encodebytes(SAMPLE).decode()  # MIME style: a newline every 76 characters
    assert "\n" in text.strip()
    assert decode_base64(" \t" + text.replace("\n", "\r\n  ") + "\n") == SAMPLE


@pytest.mark.parametrize("text", ["not base64!!", "abc*defg", "abcde", "====", "data:image/png;base64,@@@@"])
def test_invalid_base64_is_refused(text):
    with pytest.raises(ImageInputError, match="not valid base64"):
        decode_base64(text)


@pytest.mark.parametrize("text", ["", "   \n", "data:image/png;base64,"])
def test_empty_base64_is_refused(text):
    with pytest.raises(ImageInputError, match="empty"):
        decode_base64(text)


def test_data_url_of_a_real_png_decodes_end_to_end():
    source = noise(20, 12, seed=3)
    url = "data:image/png;base64," + base64.urlsafe_b64encode(encode(source, "PNG")).decode().rstrip("=")
    decoded = decode_image(decode_base64(url), max_pixels=LIMIT)
    assert np.array_equal(pixels(decoded), pixels(source))


# --- to_rgb and encode_image ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I"])
def test_to_rgb_gives_rgb_of_the_same_size(mode):
    image = Image.new(mode, (5, 3))
    converted = to_rgb(image)
    assert converted.mode == "RGB" and converted.size == (5, 3)


def test_to_rgb_keeps_rgb_as_is():
    image = noise(4, 4)
    assert to_rgb(image) is image


@pytest.mark.parametrize(
    ("output_format", "magic", "pil_format", "mime"),
    [
        ("jpeg", b"\xff\xd8\xff", "JPEG", "image/jpeg"),
        ("png", b"\x89PNG\r\n\x1a\n", "PNG", "image/png"),
        ("webp", b"RIFF", "WEBP", "image/webp"),
    ],
)
def test_encode_image_round_trips_in_the_asked_format(output_format, magic, pil_format, mime):
    source = smooth(48, 32, seed=5)
    raw = encode_image(source, output_format)
    assert raw.startswith(magic)
    assert media_type(output_format) == mime
    reopened = Image.open(io.BytesIO(raw))
    assert reopened.format == pil_format and reopened.size == (48, 32)
    decoded = decode_image(raw, max_pixels=LIMIT)
    difference = np.abs(pixels(decoded) - pixels(source))
    if output_format == "png":
        assert difference.max() == 0
    else:
        assert difference.mean() < 10


def test_encode_image_accepts_rgba():
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 128))
    for output_format in ("jpeg", "png", "webp"):
        assert Image.open(io.BytesIO(encode_image(rgba, output_format))).size == (8, 8)
