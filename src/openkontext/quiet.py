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


def quiet_libraries() -> None:
    """Errors only from diffusers and transformers, whether they are imported already or not."""
    for name in LIBRARIES:
        os.environ.setdefault(f"{name.upper()}_VERBOSITY", "error")  # read on the library's first import
        logging.getLogger(name).setLevel(logging.ERROR)
