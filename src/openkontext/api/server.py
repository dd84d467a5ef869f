"""Serving the app with uvicorn, safe without a reverse proxy: slow and idle connections are closed, the number of
concurrent connections is bounded, and a SIGTERM ends the process within a bounded time.

uvicorn has a keep-alive timeout (``timeout_keep_alive``), a concurrency limit (``limit_concurrency``: requests
beyond it get 503) and a graceful-shutdown timeout; it has no limit on how long a client may take to send its
request. ``GuardedH11Protocol`` adds two, as nginx's ``client_header_timeout`` and ``client_body_timeout``:

- headers: from the first byte of a request (or from the moment a connection opens) to the end of its headers;
- body: between two reads of the request body.

A connection that runs out of either is closed; the app sees a disconnect, and nothing it stored changes.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Settings

log = logging.getLogger(__name__)


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = 10.0
    body_timeout_s = 20.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._guard: tuple[str, object] | None = None
        super().connection_made(transport)
        self._arm("headers", self.header_timeout_s)  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        self._disarm()  # idle from here: uvicorn's keep-alive timeout takes over
        super().on_response_complete()
        if self.conn.their_state is not h11.IDLE:  # a pipelined request was buffered
            self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the timer the request's progress calls for: its headers, the next read of its body, or none."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._guard is None or self._guard[0] != "headers":
                self._arm("headers", self.header_timeout_s)
        elif state is h11.SEND_BODY:
            self._arm("body", self.body_timeout_s)  # re-armed by every read
        else:
            self._disarm()  # the request is in: the app answers in its own time

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._guard = (what, self.loop.call_later(seconds, self._too_slow, what))

    def _disarm(self) -> None:
        if getattr(self, "_guard", None) is not None:
            self._guard[1].cancel()
            self._guard = None

    def _too_slow(self, what: str) -> None:
        self._guard = None
        if not self.transport.is_closing():
            client = "%s:%d" % self.client if self.client else "a client"
            log.info("closing the connection of %s: its request %s took too long", client,
                     "headers" if what == "headers" else "body")  # fmt: skip
            self.transport.close()


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    return type("ConfiguredH11Protocol", (GuardedH11Protocol,),
                {"header_timeout_s": settings.header_timeout_s, "body_timeout_s": settings.body_timeout_s})  # fmt: skip


def serve(app, settings: Settings, log_level: str = "info") -> None:
    """Run ``app`` until SIGTERM/SIGINT, with the connection limits of ``settings``; returns within a bounded time.

    At the signal, uvicorn stops accepting and gives requests in progress ``shutdown_timeout_s`` to end; the workers
    stop at the same moment (not after that wait), so running jobs are handed back while requests drain.
    """
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            service = getattr(app.state, "service", None)
            if service is not None:
                service.workers.begin_stop()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        http=protocol_for(settings),
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = Server(config)
    server.run()
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run: start-up failed (the log says why)
    _exit_promptly(deadline_s=2.0)


def _exit_promptly(deadline_s: float) -> None:
    """Request threads still waiting on a locked store must not hold the process: give them ``deadline_s``, then
    exit (their transactions roll back; jobs run again from their leases)."""
    end = time.monotonic() + deadline_s
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, end - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    if stuck:
        log.warning("exiting with %d request thread(s) still waiting (%s)", len(stuck), ", ".join(stuck[:3]))
        logging.shutdown()
        os._exit(0)
