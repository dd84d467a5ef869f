"""Moderation: operator blocklist, prompt classifier, image classifier, thresholds by safety_tolerance.

See docs/moderation.md. The classifier modules (and their models) load only when a Moderator needs them.
"""

from .moderation import ModerationConfig, ModerationConfigError, Moderator, Verdict, verdict_for

__all__ = ["ModerationConfig", "ModerationConfigError", "Moderator", "Verdict", "verdict_for"]
