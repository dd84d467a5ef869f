"""What the environment can do to a running service, and how the long-lived loops live through it.

Three kinds of failure come from outside the code: the job store refuses a write (locked, busy, connection lost,
full, corrupt), the disk is full, and everything else (a bug). ``transient_store_error`` says which store errors are
worth retrying at once; ``out_of_space`` recognises a full disk wherever it surfaces; ``FaultLog`` lets a loop that
hits the same error every second log it once (with its traceback), count it, and say when it is over.
"""

from __future__ import annotations

import errno
import logging
import random
import threading

from sqlalchemy.exc import DBAPIError, OperationalError

OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}


def transient_store_error(exc: BaseException) -> bool:
    """A store error that may pass by itself: locked, busy, connection lost, disk full (not: corrupt, bad SQL)."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def store_error(exc: BaseException) -> bool:
    """Any error raised by the database driver (the store is unreachable, locked, full or corrupt)."""
    return isinstance(exc, DBAPIError)


def out_of_space(exc: BaseException) -> bool:
    """The disk (or quota) is full: an OSError from a file write, or SQLite's 'database or disk is full'."""
    if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE:
        return True
    return isinstance(exc, DBAPIError) and "disk is full" in str(exc.orig)


def environment_error(exc: BaseException) -> bool:
    """The job could not go on because of the environment (store or disk), not because of the job itself."""
    if store_error(exc) or out_of_space(exc):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.EROFS)


def describe(exc: BaseException) -> str:
    """One line for logs and /ready: what failed, without a traceback."""
    if out_of_space(exc):
        return "the disk is full"
    if isinstance(exc, DBAPIError):
        return f"job store error: {str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def backoff_s(failures: int, first_s: float = 0.25, max_s: float = 10.0) -> float:
    """Delay after ``failures`` consecutive failures: doubling from ``first_s`` up to ``max_s``, ±25 % jitter."""
    return min(first_s * 2 ** max(failures - 1, 0), max_s) * random.uniform(0.75, 1.25)


class FaultLog:
    """The health of one loop (a worker thread, the heartbeat, the janitor, the webhook sender).

    ``failed`` logs an error with its traceback the first time it happens, and again only when its cause changes;
    ``succeeded`` ends a run of failures with one line that says how many there were. ``failures`` counts the
    current run (0: healthy), ``cause`` says what it is.
    """

    def __init__(self, name: str, logger: logging.Logger, on_error=None):
        self.name = name
        self._log = logger
        self._on_error = on_error  # called with the loop's name for every failure (metrics)
        self._lock = threading.Lock()
        self.failures = 0
        self.cause: str | None = None

    def failed(self, doing: str, exc: BaseException) -> int:
        """Record a failure of ``doing``; returns how many in a row (for the backoff)."""
        cause = describe(exc)
        with self._lock:
            self.failures += 1
            repeated = cause == self.cause
            self.cause = cause
            failures = self.failures
        if self._on_error:
            self._on_error(self.name)
        if repeated:
            self._log.debug("%s: %s failed again (%d in a row): %s", self.name, doing, failures, cause)
        else:
            self._log.error("%s: %s failed (%s); retrying with backoff, logged once until it changes",
                            self.name, doing, cause, exc_info=exc)  # fmt: skip
        return failures

    def succeeded(self) -> None:
        if not self.failures:
            return
        with self._lock:
            failures, cause = self.failures, self.cause
            self.failures, self.cause = 0, None
        self._log.warning("%s: working again after %d failure(s) (%s)", self.name, failures, cause)
