"""Style transfer targets: deterministic functions of the clean scene render that keep the content recognisable.

Every style maps an RGB image to an RGB image of the same size with numpy only (no randomness except textures
drawn from fixed seeds), so the target of a style edit is exact.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

STYLES: tuple[str, ...] = ("brick", "pencil", "pixel", "embroidery", "watercolor", "oil")


def apply_style(image: Image.Image, style: str) -> Image.Image:
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    out = _STYLE_FNS[style](arr)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def _unit(arr: np.ndarray) -> int:
    return min(arr.shape[0], arr.shape[1])


def _cell_means(arr: np.ndarray, cell: int) -> np.ndarray:
    """Mean colour of each ``cell`` x ``cell`` block (edge blocks padded by replication)."""
    h, w, _ = arr.shape
    ph, pw = -h % cell, -w % cell
    a = np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return a.reshape(a.shape[0] // cell, cell, a.shape[1] // cell, cell, 3).mean(axis=(1, 3))


def _upsample(cells: np.ndarray, cell: int, h: int, w: int) -> np.ndarray:
    return np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[:h, :w]


def _quantize(arr: np.ndarray, palette: np.ndarray) -> np.ndarray:
    flat = arr.reshape(-1, 3)
    d = ((flat[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
    return palette[d.argmin(axis=1)].reshape(arr.shape)


def _gray(arr: np.ndarray) -> np.ndarray:
    # Element-wise, not ``arr @ weights``: a matrix product runs the BLAS kernel chosen for the CPU, whose rounding
    # differs between CPUs (the same seed gave other pixels on an AMD Zen than on an Intel Skylake-X).
    return arr[..., 0] * np.float32(0.299) + arr[..., 1] * np.float32(0.587) + arr[..., 2] * np.float32(0.114)


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur with edge replication (works on 2-D or 3-D arrays)."""
    if r <= 0:
        return a
    pad = [(r, r), (r, r)] + [(0, 0)] * (a.ndim - 2)
    p = np.pad(a, pad, mode="edge")
    c = np.cumsum(p, axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c], axis=0)
    a = (c[2 * r + 1:] - c[:-2 * r - 1]) / (2 * r + 1)
    c = np.cumsum(a, axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    return (c[:, 2 * r + 1:] - c[:, :-2 * r - 1]) / (2 * r + 1)


def _edges(gray: np.ndarray) -> np.ndarray:
    p = np.pad(gray, 1, mode="edge")
    gx = (p[1:-1, 2:] - p[1:-1, :-2]) * 2 + (p[:-2, 2:] - p[:-2, :-2]) + (p[2:, 2:] - p[2:, :-2])
    gy = (p[2:, 1:-1] - p[:-2, 1:-1]) * 2 + (p[2:, :-2] - p[:-2, :-2]) + (p[2:, 2:] - p[:-2, 2:])
    return np.hypot(gx, gy)


@functools.lru_cache(maxsize=16)
def _grain(h: int, w: int, seed: int) -> np.ndarray:
    """A fixed paper/cloth grain texture in [-1, 1]."""
    rng = np.random.default_rng(seed)
    return _box_blur(rng.uniform(-1, 1, (h, w)).astype(np.float32), 1) * 1.7


# ---------------------------------------------------------------- brick (Lego)

BRICK_PALETTE = np.array([
    (201, 26, 9), (254, 138, 24), (250, 200, 10), (35, 120, 65), (75, 159, 74), (0, 85, 191), (90, 147, 219),
    (129, 0, 123), (246, 169, 187), (88, 42, 18), (160, 95, 53), (228, 205, 158), (5, 19, 29), (108, 110, 104),
    (160, 165, 169), (244, 244, 244), (0, 143, 155), (27, 42, 52), (159, 195, 233), (120, 190, 230),
    (54, 174, 191), (160, 188, 172), (255, 240, 58), (254, 186, 189),
], np.float32)


@functools.lru_cache(maxsize=16)
def _brick_tile(cell: int) -> np.ndarray:
    """Shading of one 1x1 brick seen from above: bevelled edges and a stud with a highlight."""
    t = np.ones((cell, cell), np.float32)
    t[0, :] = t[:, 0] = 1.25
    t[-1, :] = t[:, -1] = 0.62
    yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float32) + 0.5
    c = cell / 2
    r = cell * 0.32
    dist = np.hypot(xx - c, yy - c)
    stud = dist <= r
    t[stud] = 1.08
    rim_light = stud & (dist > r * 0.6) & ((xx - c) + (yy - c) < 0)
    rim_dark = ((dist > r) & (dist <= r * 1.25)) & ((xx - c) + (yy - c) > 0)
    t[rim_light] = 1.35
    t[rim_dark] = 0.75
    return t


def brick(arr: np.ndarray) -> np.ndarray:
    h, w, _ = arr.shape
    cell = max(4, round(_unit(arr) / 32))
    colors = _quantize(_cell_means(arr, cell), BRICK_PALETTE)
    base = _upsample(colors, cell, h, w)
    tile = np.tile(_brick_tile(cell), (-(-h // cell), -(-w // cell)))[:h, :w]
    return base * tile[..., None]


# ---------------------------------------------------------------- pencil sketch

def pencil(arr: np.ndarray) -> np.ndarray:
    h, w, _ = arr.shape
    u = _unit(arr)
    gray = _gray(_box_blur(arr, 1)) / 255.0
    lines = np.clip(_edges(gray) * 2.2 - 0.15, 0, 1)
    tone = 1.0 - gray
    diag1, diag2, paper = _pencil_static(h, w)
    dark = np.maximum(lines, np.where(tone > 0.35, diag1, 0))
    dark = np.maximum(dark, np.where(tone > 0.6, diag2, 0))
    dark = np.maximum(dark, tone * 0.18)[..., None]
    return paper * (1 - dark) + _GRAPHITE * dark


_GRAPHITE = np.array([58, 58, 66], np.float32)


@functools.lru_cache(maxsize=8)
def _pencil_static(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hatching patterns (two diagonals) and the paper, which depend on the size only."""
    yy, xx = np.mgrid[0:h, 0:w]
    period = max(3, round(min(h, w) / 64))
    diag1 = np.where((xx + yy) % period == 0, 0.55, 0.0).astype(np.float32)
    diag2 = np.where((xx - yy) % period == 0, 0.7, 0.0).astype(np.float32)
    paper = np.array([250, 247, 238], np.float32) + _grain(h, w, 7)[..., None] * 5
    return diag1, diag2, paper


# ---------------------------------------------------------------- pixel art

PIXEL_PALETTE = np.array([
    (0, 0, 0), (34, 32, 52), (69, 40, 60), (102, 57, 49), (143, 86, 59), (223, 113, 38), (217, 160, 102),
    (238, 195, 154), (251, 242, 54), (153, 229, 80), (106, 190, 48), (55, 148, 110), (75, 105, 47), (82, 75, 36),
    (50, 60, 57), (63, 63, 116), (48, 96, 130), (91, 110, 225), (99, 155, 255), (95, 205, 228), (203, 219, 252),
    (255, 255, 255), (155, 173, 183), (132, 126, 135), (105, 106, 106), (89, 86, 82), (118, 66, 138),
    (172, 50, 50), (217, 87, 99), (215, 123, 186), (143, 151, 74), (138, 111, 48),
], np.float32)


def pixel(arr: np.ndarray) -> np.ndarray:
    h, w, _ = arr.shape
    cell = max(2, round(_unit(arr) / 48))
    colors = _quantize(_cell_means(arr, cell), PIXEL_PALETTE)
    # a dark outline where a cell differs strongly from the cell below or to the right, like hand-made sprites
    diff = np.zeros(colors.shape[:2], bool)
    diff[:-1] |= np.abs(colors[:-1] - colors[1:]).sum(axis=2) > 160
    diff[:, :-1] |= np.abs(colors[:, :-1] - colors[:, 1:]).sum(axis=2) > 160
    colors = np.where(diff[..., None], colors * 0.55, colors)
    return _upsample(colors, cell, h, w)


# ---------------------------------------------------------------- embroidered / woven patch

THREAD_PALETTE = np.array([
    (200, 40, 40), (240, 140, 40), (245, 210, 60), (60, 150, 70), (30, 150, 150), (50, 90, 200), (130, 70, 180),
    (235, 130, 180), (120, 75, 40), (245, 240, 230), (30, 30, 35), (140, 140, 145), (150, 200, 240), (230, 200, 150),
    (90, 140, 60), (20, 60, 120),
], np.float32)


@functools.lru_cache(maxsize=8)
def _patch_geometry(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inside-patch mask, border mask, stitch texture) for an image size."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = min(h, w)
    cx, cy = w / 2, h / 2
    rx, ry = w / 2 - u * 0.05, h / 2 - u * 0.05
    # rounded rectangle via a superellipse
    d = (np.abs((xx - cx) / rx) ** 5 + np.abs((yy - cy) / ry) ** 5) ** (1 / 5)
    border_w = u * 0.045 / min(rx, ry)
    inside = d <= 1 - border_w
    border = (d > 1 - border_w) & (d <= 1)
    cell = max(3, round(u / 64))
    row = (yy // cell).astype(int)
    # satin stitches: diagonal thread stripes whose direction alternates per row of cells
    direction = np.where(row % 2 == 0, 1.0, -1.0)
    phase = (xx + direction * yy) * (2 * np.pi / cell)
    texture = 1.0 + 0.16 * np.sin(phase) + 0.04 * np.sin(xx * 2 * np.pi / 2.0)
    return inside, border, texture.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _patch_backdrop(h: int, w: int) -> np.ndarray:
    """Denim cloth with the patch's stitched border: everything but the patch's inside."""
    _, border, _ = _patch_geometry(h, w)
    u = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    twill = 1 + 0.1 * (((xx + yy * 2) % 4 < 2) - 0.5)
    denim = np.array([58, 86, 130], np.float32) * twill[..., None] + _grain(h, w, 11)[..., None] * 6
    ang = np.arctan2(yy - h / 2, xx - w / 2)
    dash = (np.sin(ang * u / 3) > 0)[..., None]
    edge = np.where(dash, np.array([236, 200, 90], np.float32), np.array([200, 160, 60], np.float32))
    return np.where(border[..., None], edge, denim).astype(np.float32)


def embroidery(arr: np.ndarray) -> np.ndarray:
    h, w, _ = arr.shape
    u = _unit(arr)
    inside, _, texture = _patch_geometry(h, w)
    # the content is shrunk to fit inside the patch
    small = np.asarray(Image.fromarray(arr.astype(np.uint8)).resize(
        (int(w * 0.86), int(h * 0.86)), Image.Resampling.BILINEAR), np.float32)
    content = np.empty_like(arr)
    content[:] = THREAD_PALETTE[9]
    oy, ox = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    content[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    cell = max(3, round(u / 64))
    threads = _upsample(_quantize(_cell_means(content, cell), THREAD_PALETTE), cell, h, w) * texture[..., None]
    return np.where(inside[..., None], threads, _patch_backdrop(h, w))


# ---------------------------------------------------------------- watercolour

def watercolor(arr: np.ndarray) -> np.ndarray:
    h, w, _ = arr.shape
    u = _unit(arr)
    soft = _box_blur(arr, max(1, round(u / 128)))
    levels = 6.0
    poster = np.round(soft / 255 * levels) / levels * 255
    washed = poster * 0.78 + 255 * 0.22
    region_edges = np.clip(_edges(_gray(poster) / 255) * 1.5, 0, 1)
    wet_edge = _box_blur(region_edges, 1)
    grain = _grain(h, w, 3)
    pigment = 1 - 0.22 * wet_edge[..., None] + 0.05 * grain[..., None]
    paper = np.array([252, 249, 240], np.float32)
    return np.minimum(washed * pigment, paper)


# ---------------------------------------------------------------- oil painting (brush strokes)

@functools.lru_cache(maxsize=8)
def _stroke_taps(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sample positions of a directional smear whose direction changes per cell: reads as brush strokes."""
    u = min(h, w)
    rng = np.random.default_rng(5)
    cell = max(3, round(u / 24))
    yy, xx = np.mgrid[0:h, 0:w]
    # cells are offset per row so strokes do not line up on a grid
    cy = yy // cell
    cx = (xx + (cy % 2) * (cell // 2)) // cell
    ang = rng.uniform(0, np.pi, (cy.max() + 1, cx.max() + 2))[cy, cx]
    step = max(1.0, u / 110)
    taps = []
    for k in range(-3, 4):
        ty = np.clip(np.round(yy + np.sin(ang) * k * step), 0, h - 1).astype(np.intp)
        tx = np.clip(np.round(xx + np.cos(ang) * k * step), 0, w - 1).astype(np.intp)
        taps.append((ty, tx))
    return taps


def oil(arr: np.ndarray) -> np.ndarray:
    h, w, _ = arr.shape
    taps = _stroke_taps(h, w)
    smear = sum(arr[ty, tx] for ty, tx in taps) / len(taps)
    poster = np.round(smear / 255 * 10) / 10 * 255
    rich = np.clip((poster - 128) * 1.12 + 128, 0, 255)
    ridges = _grain(h, w, 9)[..., None]
    return rich * (1 + 0.06 * ridges)


_STYLE_FNS = {"brick": brick, "pencil": pencil, "pixel": pixel, "embroidery": embroidery, "watercolor": watercolor,
              "oil": oil}
