"""OpenKontext: self-hosted in-context image editing with a BFL-compatible API."""

__version__ = "0.1.0"
