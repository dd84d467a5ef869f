"""Engine tests run the tiny model on the CPU. One intra-op thread: the tiny tensors gain nothing from more, and
on a shared 2-core machine torch's spinning worker threads make each step dozens of times slower under load."""

from __future__ import annotations

import json

import pytest
import torch

TINY_CARD = {"name": "tiny-saved", "native_side": 64, "max_sequence_length": 48}


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """The tiny model (seed 0, as ``load_engine("tiny")`` builds it) saved as a diffusers folder with its card."""
    from openkontext.engine.loading import load_engine

    folder = tmp_path_factory.mktemp("tiny-model")
    load_engine("tiny", device="cpu").pipeline.save_pretrained(folder, safe_serialization=True)
    (folder / "openkontext.json").write_text(json.dumps(TINY_CARD))
    return folder
