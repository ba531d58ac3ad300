"""Run the app on uvicorn the way an operator needs it: log level, access log, and a graceful shutdown.

On SIGTERM (or the first Ctrl-C) the server *drains* before it closes: ``/ready`` turns 503 so a
load balancer stops sending traffic, new requests get 503 with ``Retry-After``, and requests in
flight finish, for at most ``graceful_shutdown_s``. Then uvicorn closes the port and the lifespan
ends. A second signal ends the drain and hands over to uvicorn's own shutdown (which still lets
requests in flight finish; a further Ctrl-C forces it, as in uvicorn).

The listening socket stays open while draining on purpose: a client that arrives then gets an
answer it can act on (503, retry elsewhere or later) rather than a refused connection.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn
from fastapi import FastAPI

from lorascope.errors import LorascopeError
from lorascope.serve.http.lifecycle import Lifecycle
from lorascope.serve.http.settings import ServerSettings


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first exit signal drains the app before shutting down.

    Args:
        config: The uvicorn config (its app is a lorascope app).
        lifecycle: The app's :class:`~lorascope.serve.http.lifecycle.Lifecycle`.
        drain_s: Longest wait for requests in flight.
    """

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_s: float) -> None:
        super().__init__(config)
        self.lifecycle, self.drain_s = lifecycle, drain_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: start draining. Later ones: uvicorn's own handling (shut down; a repeated SIGINT forces)."""
        if not self.lifecycle.draining and not self.should_exit:
            # Plain attribute writes: safe from a signal handler; the event loop acts on them next tick.
            self.lifecycle.begin_drain(self.drain_s)
            return
        super().handle_exit(sig, frame)

    def drain(self) -> None:
        """Begin a graceful shutdown, as SIGTERM would (callable from any thread)."""
        self.handle_exit(signal.SIGTERM, None)

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's main-loop tick (every 0.1 s): exit once a drain has finished."""
        if await super().on_tick(counter):
            return True
        return self.lifecycle.drained()


def make_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> DrainingServer:
    """A :class:`DrainingServer` for ``app`` set up from ``app.state.settings``.

    uvicorn's own access log stays off: the app writes its own when ``settings.access_log`` is set
    (with the time each request took, which uvicorn's does not have). A failed model load stops
    the server.
    """
    settings: ServerSettings = app.state.settings
    _configure_logging(settings.log_level)
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level, access_log=False,
                            timeout_graceful_shutdown=max(1, int(settings.graceful_shutdown_s)))
    server = DrainingServer(config, app.state.lifecycle, settings.graceful_shutdown_s)

    def stop_on_failure() -> None:
        server.should_exit = True

    app.state.service.on_load_failure = stop_on_failure
    return server


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or Ctrl-C, then drain and stop.

    Raises:
        LorascopeError: When the model (loaded after start-up, see ``build_app(lazy=True)``) failed to load.
    """
    server = make_server(app, host, port)
    server.run()
    lifecycle: Lifecycle = app.state.lifecycle
    if lifecycle.state == "failed":
        raise LorascopeError(f"the model failed to load: {lifecycle.error}")


def _configure_logging(level: str) -> None:
    """Give lorascope's server loggers (errors, access log) a handler at ``level``, once."""
    logger = logging.getLogger("lorascope.serve.http")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    # The access log is INFO: asking for it means wanting it, whatever the level of the rest.
    access = logging.getLogger("lorascope.serve.http.access")
    access.setLevel(logging.INFO)
