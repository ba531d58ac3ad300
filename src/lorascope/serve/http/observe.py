"""What an operator sees: Prometheus metrics, the access log, and refusing new work while draining.

:class:`Metrics` keeps its own :class:`prometheus_client.CollectorRegistry` (not the process-wide
default), so two apps in one process, as in the tests, never share or clash over counters.
``GET /metrics`` renders it in Prometheus' text format. The metrics (``_total``, ``_bucket`` ...
suffixes as Prometheus adds them):

* ``lorascope_http_requests_total{route, method, status}``: every answered request, by route
  template (``/v1/adapters/{name}``, never the raw path, so a client cannot mint label values;
  ``unmatched`` for paths no route serves);
* ``lorascope_http_request_duration_seconds{route, method}``: latency histogram;
* ``lorascope_http_requests_in_flight``;
* ``lorascope_batch_rows``, ``lorascope_batch_requests``: histograms of rows and of requests per
  forward pass; ``lorascope_batch_duration_seconds``: the forward pass' time;
* ``lorascope_mixed_batches_total``: forward passes that mixed several adapters;
* ``lorascope_queue_depth`` (requests waiting for a forward pass) and ``lorascope_queue_limit``
  (``max_queue``);
* ``lorascope_requests_rejected_total{reason}``: refusals for load or state: ``queue_full``
  (429), ``deadline`` (503 after ``request_timeout_s``), ``draining`` and ``loading`` (503);
* ``lorascope_adapters_loaded``, ``lorascope_ready`` (1 when ``/ready`` would answer 200).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lorascope.serve.http.errors import error_response, openai_path
from lorascope.serve.http.lifecycle import Lifecycle

access_log = logging.getLogger("lorascope.serve.http.access")

# Probes and the scrape keep answering while the server drains: the orchestrator must see it go
# not-ready, and the last scrape should show the drain.
PROBE_PATHS = frozenset({"/healthz", "/health", "/ready"})
OPEN_WHILE_DRAINING = PROBE_PATHS | {"/metrics"}

REJECT_REASONS = ("queue_full", "deadline", "draining", "loading")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _Counted(Collector):
    """A counter kept elsewhere (the engine counts mixed batches), read at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterable[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


class Metrics:
    """The server's Prometheus metrics.

    Args:
        lifecycle: For readiness and requests in flight.
        waiting: Reads the number of requests waiting for a forward pass.
        adapters: Reads the number of loaded adapters.
        mixed_batches: Reads the number of mixed-adapter forward passes so far.
        max_queue: The queue's bound, exported as a gauge.
    """

    def __init__(self, lifecycle: Lifecycle, waiting: Callable[[], int], adapters: Callable[[], int],
                 mixed_batches: Callable[[], int], max_queue: int) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("lorascope_http_requests", "HTTP requests answered, by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("lorascope_http_request_duration_seconds", "Time to answer a request, by route template",
                                 ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r)
        Gauge("lorascope_http_requests_in_flight", "Requests being handled now",
              registry=r).set_function(lambda: lifecycle.in_flight)
        self.batch_rows = Histogram("lorascope_batch_rows", "Rows (inputs) per forward pass", buckets=_SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("lorascope_batch_requests", "Requests per forward pass", buckets=_SIZE_BUCKETS,
                                        registry=r)
        self.batch_seconds = Histogram("lorascope_batch_duration_seconds", "Time of one forward pass",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        r.register(_Counted("lorascope_mixed_batches", "Forward passes that mixed several adapters",
                            lambda: float(mixed_batches())))
        Gauge("lorascope_queue_depth", "Classify requests waiting for a forward pass",
              registry=r).set_function(lambda: float(waiting()))
        Gauge("lorascope_queue_limit", "Most requests allowed to wait (max_queue); one more gets 429",
              registry=r).set(max_queue)
        self.rejected = Counter("lorascope_requests_rejected", "Requests refused for load or server state, by reason",
                                ["reason"], registry=r)
        for reason in REJECT_REASONS:  # present from the first scrape, so rate() has a start
            self.rejected.labels(reason)
        Gauge("lorascope_adapters_loaded", "Adapters loaded", registry=r).set_function(lambda: float(adapters()))
        Gauge("lorascope_ready", "1 when the server is ready for traffic (GET /ready answers 200)",
              registry=r).set_function(lambda: float(lifecycle.ready))

    def observe_batch(self, requests: int, rows: int, seconds: float) -> None:
        """Record one forward pass (the micro-batcher's ``on_batch``)."""
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)
        self.batch_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Observe:
    """ASGI middleware: count and time every request, log it when asked, refuse new work while draining.

    It sits outside the token and size checks, so their 401s and 413s are counted too, and inside
    :class:`~lorascope.serve.http.errors.LastResort`, so an unexpected exception is counted as a 500.

    Args:
        app: The wrapped ASGI app.
        metrics: Where to count.
        lifecycle: Draining state and the in-flight count.
        router: The app's router, to name a request by its route template.
        retry_after_s: ``Retry-After`` of the 503 sent while draining.
        log_requests: Write one access-log line per request.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, lifecycle: Lifecycle, router: Router, retry_after_s: int,
                 log_requests: bool) -> None:
        self.app, self.metrics, self.lifecycle, self.router = app, metrics, lifecycle, router
        self.retry_after = str(retry_after_s)
        self.log_requests = log_requests

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")  # FastAPI records the matched route once it has routed the request
        if route is not None and hasattr(route, "path"):
            path: str = route.path
            return path
        partial = None
        for candidate in self.router.routes:
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                return getattr(candidate, "path", "unmatched")
            if match == Match.PARTIAL and partial is None:
                partial = getattr(candidate, "path", None)
        return partial or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path = scope.get("path", "")
        if self.lifecycle.draining and path not in OPEN_WHILE_DRAINING:
            self.metrics.rejected.labels("draining").inc()
            status = 503
            await error_response(503, "shutting_down", "the server is shutting down: retry later or elsewhere",
                                 {"Retry-After": self.retry_after}, openai=openai_path(path))(scope, receive, send)
            self._record(scope, status, started)
            return

        async def send_tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.lifecycle.in_flight += 1
        try:
            await self.app(scope, receive, send_tracked)
        finally:
            self.lifecycle.in_flight -= 1
            self._record(scope, status, started)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        route, method = self._route(scope), scope.get("method", "")
        self.metrics.requests.labels(route, method, str(status)).inc()
        self.metrics.latency.labels(route, method).observe(seconds)
        if self.log_requests:
            client = scope.get("client")
            who = f"{client[0]}:{client[1]}" if client else "-"
            # The path only: a query string could carry something a client did not mean to have logged.
            access_log.info('%s "%s %s HTTP/%s" %d %.1fms', who, method, scope.get("path", ""),
                            scope.get("http_version", "1.1"), status, seconds * 1e3)
