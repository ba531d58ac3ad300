"""Where the server is in its life: loading, ready, draining for shutdown, or failed to load.

The probes read it (``/healthz`` and ``/health`` answer "alive", ``/ready`` answers "send me
traffic"), the middleware in :mod:`lorascope.serve.http.observe` refuses new work while
draining, and :class:`lorascope.serve.http.run.DrainingServer` waits on it before closing.

Every method runs on the event loop (or, for :meth:`Lifecycle.begin_drain`, sets plain
attributes from a signal handler), so no lock is needed.
"""

from __future__ import annotations

import time
from typing import Literal

State = Literal["loading", "ready", "failed"]


class Lifecycle:
    """The server's state, and the requests it is still working on.

    Attributes:
        state: ``loading`` until the model and start-up adapters are in memory, then ``ready``, or
            ``failed`` when loading raised (``error`` says why).
        draining: True once shutdown began: new work gets 503, requests in flight finish.
        in_flight: Requests being handled now (not counting those refused while draining).
        started: Unix time the server object was made (the ``created`` of the base model card).
    """

    def __init__(self, loaded: bool) -> None:
        self.state: State = "ready" if loaded else "loading"
        self.error: str | None = None
        self.draining = False
        self.drain_deadline: float | None = None
        self.in_flight = 0
        self.started = int(time.time())

    @property
    def ready(self) -> bool:
        """Whether to send this server traffic: loaded and not shutting down."""
        return self.state == "ready" and not self.draining

    @property
    def status(self) -> str:
        """One word for the probes: loading, ready, draining or failed."""
        if self.state == "failed":
            return "failed"
        return "draining" if self.draining else self.state

    def loaded(self) -> None:
        """The model and start-up adapters are in memory."""
        self.state = "ready"

    def fail(self, error: str) -> None:
        """Loading failed; the server cannot serve."""
        self.state, self.error = "failed", error

    def begin_drain(self, timeout_s: float) -> None:
        """Start shutting down: refuse new work, and give requests in flight ``timeout_s`` seconds."""
        if not self.draining:
            self.draining = True
            self.drain_deadline = time.monotonic() + timeout_s

    def drained(self) -> bool:
        """Whether a drain is under way and over: nothing in flight, or its time is up."""
        if not self.draining:
            return False
        return self.in_flight == 0 or time.monotonic() >= (self.drain_deadline or 0.0)
