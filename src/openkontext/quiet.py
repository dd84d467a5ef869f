"""Keeping diffusers' and transformers' own notices out of our commands' output (the CLI and the scripts).

transformers warns, as diffusers' pipelines import its image processors, that they would like torchvision (we never
use them); both libraries log per-call notices (prompt truncation, dtype casts) that would bury a progress bar or a
results table. Call ``quiet_libraries()`` before importing the engine: each library sets its verbosity from the
environment when it is first imported, so only the environment variables reach transformers' import-time warnings.
"""

from __future__ import annotations

import logging
import os

LIBRARIES = ("diffusers", "transformers")
# Loggers without a verbosity variable: torchao (imported by diffusers when installed) reports the CUDA kernels a CPU
# build cannot load, and its import makes torch log a deprecation notice.
LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_libraries() -> None:
    """Errors only from diffusers, transformers and torchao, whether they are imported already or not."""
    for name in LIBRARIES:
        os.environ.setdefault(f"{name.upper()}_VERBOSITY", "error")  # read on the library's first import
    for name in (*LIBRARIES, *LOGGERS):
        logging.getLogger(name).setLevel(logging.ERROR)
