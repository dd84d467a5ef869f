"""Training tests run tiny models on the CPU with one intra-op thread: the tiny tensors gain nothing from more, and
on a shared 2-core machine torch's spinning worker threads make each step many times slower under load."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name)``: ``scripts/<name>.py`` as a module (the diagnostic scripts are not in the package); its
    ``__file__`` is the script to run."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder of the tiny-glyph recipe after two steps: what the diagnostic scripts read."""
    from openkontext.training import preset
    from openkontext.training.loop import train_flow

    folder = tmp_path_factory.mktemp("run")
    train_flow(preset("tiny-glyph", **{"flow.steps": 2}), folder)
    return folder
