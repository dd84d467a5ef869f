"""Per-category metrics. Every score splits into *success* (the asked change happened) and *preservation*
(nothing else changed); see docs/toyworld.md for the definitions and thresholds.

All functions take the case (a ``Sample`` or a ``Turn`` plus the image the editor was given) and the editor's
output, resized to the target size if needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from openkontext.toyworld.colors import PALETTE
from openkontext.toyworld.sample import Sample

from . import ocr

PSNR_CAP = 60.0
# success thresholds (dB) for the PSNR-scored categories
SUCCESS_PSNR = {"local": 20.0, "global": 18.0, "style": 16.0, "character_reference": 18.0, "text": 20.0}
IDENTITY_HIST_MIN = 0.5


def as_array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    image = image.convert("RGB")
    if image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """PSNR in dB over the masked pixels (capped at 60 dB for identical pixels); None for an empty mask."""
    if mask is not None:
        if not mask.any():
            return None
        a, b = a[mask], b[mask]
    mse = float(np.mean((a - b) ** 2))
    if mse <= 1e-10:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * np.log10(255.0**2 / mse))


def _downsample(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    return a[:h, :w].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))


# ---------------------------------------------------------------- masked PSNR categories

def score_masked(category: str, inp: np.ndarray, out: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
    """local / global / text pixels: PSNR vs the target inside the mask, vs the input outside it."""
    to_target = psnr(out, target, mask)
    to_input_inside = psnr(out, inp, mask)
    preservation = psnr(out, inp, ~mask)
    success = to_target is not None and to_target >= SUCCESS_PSNR[category] and to_target > to_input_inside
    return {"success": bool(success), "psnr_mask_target": to_target, "psnr_mask_input": to_input_inside,
            "preservation": preservation}


def score_style(inp: np.ndarray, out: np.ndarray, target: np.ndarray) -> dict:
    to_target = psnr(out, target)
    to_input = psnr(out, inp)
    # content kept: the layout at 1/8 resolution matches the target's
    content = psnr(_downsample(out, 8), _downsample(target, 8))
    success = to_target >= SUCCESS_PSNR["style"] and to_target > to_input
    return {"success": bool(success), "psnr_target": to_target, "psnr_input": to_input, "preservation": content}


# ---------------------------------------------------------------- character reference

def _hist(pixels: np.ndarray, bins: int = 8) -> np.ndarray:
    q = (pixels // (256 // bins)).astype(np.int64)
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    h = np.bincount(idx, minlength=bins**3).astype(np.float64)
    return h / max(h.sum(), 1.0)


def _shifts(size: tuple[int, int]) -> list[tuple[int, int]]:
    r = max(4, int(0.05 * max(size)))
    return [(dy, dx) for dy in range(-r, r + 1, 2) for dx in range(-r, r + 1, 2)]


def _shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out


def score_character(case, inp: np.ndarray, out: np.ndarray, target: np.ndarray) -> dict:
    """Identity at the asked place, tolerant to a small misplacement (a copy of the input scores low because the
    character is asked elsewhere, in another scene).

    success: best PSNR over small shifts between the output and the target on the character's silhouette;
    preservation: colour-histogram intersection between the reference character (in the input) and the output
    under the silhouette at that best shift.
    """
    sil = case.regions["subject"]
    best, best_shift = -1.0, (0, 0)
    ys, xs = np.nonzero(sil)
    for dy, dx in _shifts(sil.shape[::-1]):
        y2, x2 = ys + dy, xs + dx
        ok = (y2 >= 0) & (y2 < sil.shape[0]) & (x2 >= 0) & (x2 < sil.shape[1])
        if ok.sum() < 0.8 * len(ys):
            continue
        p = psnr(out[y2[ok], x2[ok]], target[ys[ok], xs[ok]])
        if p > best:
            best, best_shift = p, (dy, dx)
    out_pixels = out[_shifted(sil, *best_shift)]
    ref_pixels = inp[case.regions["source_subject"]]
    hist = float(np.minimum(_hist(out_pixels), _hist(ref_pixels)).sum())
    background = ~_dilate(sil, 3)
    scene = psnr(out, target, background)
    success = best >= SUCCESS_PSNR["character_reference"] and hist >= IDENTITY_HIST_MIN
    return {"success": bool(success), "identity_psnr": best, "identity_hist": hist, "scene_psnr": scene,
            "preservation": hist}


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= _shifted(mask, dy, dx)
    return out


# ---------------------------------------------------------------- text

def score_text(meta: dict, inp: np.ndarray, out: np.ndarray, target: np.ndarray, mask: np.ndarray,
               out_image: Image.Image) -> dict:
    """OCR inside the sign: the new word read exactly, the old one gone."""
    words = ocr.read_words(out_image, meta["text_box"])
    new, old = meta.get("new_word"), meta.get("old_word")
    new_ok = new is None or new in words
    old_gone = old is None or old not in words
    if new is None:  # removal: also the board must be blank like the target
        new_ok = (psnr(out, target, mask) or 0) >= SUCCESS_PSNR["text"]
    return {"success": bool(new_ok and old_gone), "ocr": " ".join(words), "new_word_read": bool(new_ok),
            "old_word_gone": bool(old_gone), "psnr_mask_target": psnr(out, target, mask),
            "preservation": psnr(out, inp, ~mask)}


# ---------------------------------------------------------------- text to image

COLOR_TOL = 60.0


def _color_fraction(region: np.ndarray, rgb) -> float:
    if region.size == 0:
        return 0.0
    d = np.sqrt(((region - np.asarray(rgb, np.float32)) ** 2).sum(axis=-1))
    return float((d < COLOR_TOL).mean())


def score_text_to_image(sample: Sample, out: np.ndarray, target: np.ndarray, out_image: Image.Image) -> dict:
    """Content from the generator's ground truth: each subject's colour present in its slot (at least half as
    much as in the target), each word read by OCR, the sky/wall and ground colours close to the target's."""
    h, w = target.shape[:2]
    checks: dict[str, bool] = {}
    for item, slot in zip(sample.meta["items"], sample.meta["slots"]):
        x0 = {"left": 0, "middle": w // 3, "right": 2 * w // 3}[slot]
        cols = slice(x0, x0 + w // 3)
        rows = slice(int(h * 0.35), h)
        if item["type"] == "sign":
            words = ocr.read_words(out_image, item["text_box"])
            checks[f"word {item['word']}"] = item["word"] in words
            continue
        color = item["color"] if item["type"] == "object" else item["identity"].split("-")[1]
        want = _color_fraction(target[rows, cols], PALETTE[color])
        got = _color_fraction(out[rows, cols], PALETTE[color])
        checks[f"{color} {item.get('kind', 'creature')} {slot}"] = want > 0 and got >= 0.5 * want
    # background: the median colour of the top band and of the bottom band outside the subjects
    top = np.median(target[: int(h * 0.12)].reshape(-1, 3), axis=0)
    got_top = np.median(out[: int(h * 0.12)].reshape(-1, 3), axis=0)
    checks["sky"] = float(np.linalg.norm(top - got_top)) < COLOR_TOL
    free = np.ones((h, w), bool)
    for item in sample.meta["items"]:
        x0, y0, x1, y1 = item["bbox"]
        free[y0:y1, x0:x1] = False
    free[: int(h * 0.75)] = False
    if free.any():
        checks["ground"] = float(np.linalg.norm(np.median(target[free], axis=0) - np.median(out[free], axis=0))) < COLOR_TOL
    passed = sum(checks.values())
    return {"success": passed == len(checks), "content_score": passed / len(checks), "checks": checks,
            "preservation": None}


# ---------------------------------------------------------------- dispatch

def score_case(category: str, case, meta: dict, input_image: Image.Image | None, output: Image.Image,
               sample: Sample | None = None) -> dict:
    """Score one edit (a sample, or one turn of an iterative sample whose ``category`` is the turn's)."""
    size = case.target.size
    target = as_array(case.target, size)
    out = as_array(output, size)
    if category == "text_to_image":
        return score_text_to_image(sample, out, target, output.resize(size) if output.size != size else output)
    inp = as_array(input_image, size)
    if category == "style":
        return score_style(inp, out, target)
    if category == "character_reference":
        return score_character(case, inp, out, target)
    if category == "text" or meta.get("family") in ("replace_text", "add_text", "remove_text"):
        return score_text(meta, inp, out, target, case.mask, output.resize(size) if output.size != size else output)
    return score_masked(category, inp, out, target, case.mask)
