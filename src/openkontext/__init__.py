"""OpenKontext: self-hosted in-context image editing with a BFL-compatible API."""

import os

# torch's CPU threads (libgomp on Linux) spin 300,000 times at every barrier before they sleep; when another
# process holds one of the cores, each step then waits on a descheduled spinner and a 3 s edit took 115-135 s on
# 2 cores. 1000 spins (what libgomp itself uses when it sees more threads than cores under an ACTIVE policy) kept
# the idle edit's speed and made the loaded one 6 s (docs/benchmarks.md, "Thread settings"). libgomp reads it when torch is first imported,
# so it is set here, before any of our modules imports torch; a value of the user's own is left alone.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"

from .client import APIError, Client, ModerationError, OpenKontextError, TaskFailed, verify_webhook  # noqa: E402

__version__ = "0.1.0"
__all__ = ["APIError", "Client", "ModerationError", "OpenKontextError", "TaskFailed", "__version__", "verify_webhook"]
