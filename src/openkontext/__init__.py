"""OpenKontext: self-hosted in-context image editing with a BFL-compatible API."""

from .client import APIError, Client, ModerationError, OpenKontextError, TaskFailed, verify_webhook

__version__ = "0.1.0"
__all__ = ["APIError", "Client", "ModerationError", "OpenKontextError", "TaskFailed", "__version__", "verify_webhook"]
