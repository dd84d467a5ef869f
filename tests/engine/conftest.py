"""Engine tests run the tiny model on the CPU. One intra-op thread: the tiny tensors gain nothing from more, and
on a shared 2-core machine torch's spinning worker threads make each step dozens of times slower under load."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
