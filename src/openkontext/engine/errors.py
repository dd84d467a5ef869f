"""What an edit can end with besides an image, importable without torch (the worker catches it; ``kontext.py``
raises it)."""


class EditCancelled(Exception):
    """The step callback asked the run to stop."""
