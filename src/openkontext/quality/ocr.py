"""OCR of rendered words: RapidOCR (PP-OCR ONNX models bundled in the PyPI package, run by onnxruntime).

Only the region where text is expected is read, upscaled so that letters are ~40 px tall, which is what the
recogniser is trained on. ``read_words`` returns upper-case alphanumeric tokens.
"""

from __future__ import annotations

import functools
import logging
import re

import numpy as np
from PIL import Image

TARGET_TEXT_HEIGHT = 48


class OCRUnavailable(RuntimeError):
    pass


@functools.cache
def _engine():
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise OCRUnavailable("OCR needs the PyPI packages rapidocr and onnxruntime (pip install rapidocr "
                             "onnxruntime)") from exc
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return RapidOCR(params={"Global.log_level": "warning"})


def available() -> bool:
    try:
        _engine()
        return True
    except Exception:
        return False


def read_text(image: Image.Image, box: list[int] | tuple[int, int, int, int] | None = None, pad: int = 6) -> str:
    """All text found in ``image`` (or in ``box`` of it, padded), joined with spaces, upper case."""
    img = image.convert("RGB")
    if box is not None:
        x0, y0, x1, y1 = box
        img = img.crop((max(0, x0 - pad), max(0, y0 - pad), min(img.width, x1 + pad), min(img.height, y1 + pad)))
    scale = max(1.0, TARGET_TEXT_HEIGHT / max(1, img.height)) if box is not None else max(1.0, 640 / max(img.size))
    if scale > 1:
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BICUBIC)
    # a crop holds one line of text: recognition only (detection is slow and not needed there)
    detect = box is None
    result = _engine()(np.asarray(img)[:, :, ::-1].copy(), use_det=detect, use_cls=False, use_rec=True)
    texts = getattr(result, "txts", None) or ()
    return " ".join(t for t in texts if t).upper()


def read_words(image: Image.Image, box=None) -> list[str]:
    return re.findall(r"[A-Z0-9]+", read_text(image, box))


def contains_word(image: Image.Image, word: str, box=None) -> bool:
    return word.upper() in read_words(image, box)
