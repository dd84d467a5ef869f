"""The one vocabulary of task statuses: how a task's state is named on the wire and inside the service.

``TaskStatus`` is what clients see (BFL's strings, plus ``Cancelled``, which BFL's API does not have); ``JobStatus``
is the job store's lifecycle, finer than the wire (queued and running both show as ``Pending``). The API, the
Python client, the CLI and the playground (``api/static/statuses.js``, checked against this module by a test) all
use these names. This module imports nothing heavy: the client depends on it.
"""

from __future__ import annotations

import enum


class TaskStatus(str, enum.Enum):
    """A task's status as ``get_result`` reports it."""

    PENDING = "Pending"
    READY = "Ready"
    ERROR = "Error"
    REQUEST_MODERATED = "Request Moderated"
    CONTENT_MODERATED = "Content Moderated"
    CANCELLED = "Cancelled"
    TASK_NOT_FOUND = "Task not found"

    @property
    def ended(self) -> bool:
        """Polling again would not change it."""
        return self is not TaskStatus.PENDING

    @property
    def moderated(self) -> bool:
        return self in (TaskStatus.REQUEST_MODERATED, TaskStatus.CONTENT_MODERATED)


class JobStatus(str, enum.Enum):
    """A job's state in the store: ``queued → running → (ready | error | request_moderated | content_moderated |
    cancelled)``."""

    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    ERROR = "error"
    REQUEST_MODERATED = "request_moderated"
    CONTENT_MODERATED = "content_moderated"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def wire(self) -> TaskStatus:
        return _WIRE[self]


_WIRE = {
    JobStatus.QUEUED: TaskStatus.PENDING,
    JobStatus.RUNNING: TaskStatus.PENDING,
    JobStatus.READY: TaskStatus.READY,
    JobStatus.ERROR: TaskStatus.ERROR,
    JobStatus.REQUEST_MODERATED: TaskStatus.REQUEST_MODERATED,
    JobStatus.CONTENT_MODERATED: TaskStatus.CONTENT_MODERATED,
    JobStatus.CANCELLED: TaskStatus.CANCELLED,
}
