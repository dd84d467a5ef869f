"""open_nsfw via OpenCV: low scores on benign content, reference preprocessing, thread safety.

No unsafe imagery is used or committed: the classifier's positive side is exercised through threshold overrides
(test_moderator.py) and documented from Yahoo's guidance (docs/moderation.md).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from openkontext.safety.benign_images import benign_images, flat, landscape, toy_figure
from openkontext.safety.calibrate import sample_photos
from openkontext.safety.image_classifier import CROP, MEAN_BGR, preprocess
from openkontext.safety.thresholds import IMAGE, TOLERANCES

BENIGN = list(benign_images())


@pytest.fixture(scope="module")
def benign_scores(image_classifier):
    return {name: image_classifier.score(image) for name, image in BENIGN + sample_photos()}


def test_benign_images_score_low(benign_scores):
    assert len(benign_scores) >= 50
    high = {name: round(s, 3) for name, s in benign_scores.items() if s >= IMAGE.threshold(2)}
    assert not high
    # Lower than the strictest threshold too, with a margin: the highest are flat skin-coloured images.
    assert max(benign_scores.values()) < IMAGE.threshold(0) - 0.05
    assert np.median(list(benign_scores.values())) < 0.05


def test_real_photos_score_very_low(benign_scores):
    photos = {n: s for n, s in benign_scores.items() if n.startswith("photo-")}
    if not photos:
        pytest.skip("scikit-learn's sample photos are not installed")
    assert max(photos.values()) < 0.05


def test_the_model_is_really_running(benign_scores):
    """Not a constant: skin-coloured flat images score far above landscapes and toy figures (the known bias)."""
    assert benign_scores["flat-skin-5"] > 20 * benign_scores["landscape-0"]
    assert len({round(s, 6) for s in benign_scores.values()}) > 40


@pytest.mark.parametrize("name,image", BENIGN[::4], ids=lambda x: x if isinstance(x, str) else "")
def test_benign_images_pass_at_every_tolerance(moderator, name, image):
    for tolerance in TOLERANCES:
        assert not moderator.check_image(image, tolerance).flagged


def test_preprocessing_is_open_nsfw_reference():
    red = flat((255, 0, 0), size=(300, 200))
    batch = preprocess(red)
    assert batch.shape == (2, 3, CROP, CROP) and batch.dtype == np.float32
    # BGR order, mean subtracted on the 0..255 scale (JPEG may shift a flat colour by a level or two)
    centre = batch[0, :, 112, 112]
    assert np.allclose(centre, np.array([0, 0, 255], np.float32) - MEAN_BGR, atol=3)


def test_transparent_images_are_scored_as_seen_and_as_stored():
    rgba = Image.new("RGBA", (64, 64), (200, 100, 50, 0))
    assert preprocess(rgba).shape[0] == 4
    assert preprocess(rgba.convert("LA")).shape[0] == 4
    assert preprocess(Image.new("L", (64, 64), 128)).shape[0] == 2


def test_tiny_and_odd_sized_images(image_classifier):
    for size in [(1, 1), (7, 300), (2048, 16)]:
        assert 0.0 <= image_classifier.score(flat((120, 130, 140), size=size)) <= 1.0


def test_thread_safe(image_classifier):
    images = [landscape(0), toy_figure((224, 172, 140), (50, 120, 220)), flat((141, 85, 36))] * 4
    expected = [image_classifier.score(im) for im in images]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(image_classifier.score, images))
    assert np.allclose(got, expected, atol=1e-6)
