"""Training tests run tiny models on the CPU with one intra-op thread: the tiny tensors gain nothing from more, and
on a shared 2-core machine torch's spinning worker threads make each step many times slower under load."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
