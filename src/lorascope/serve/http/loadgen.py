"""HTTP load generator for ``lorascope serve``: concurrent clients, mixed adapters, loopback only.

Two ways to load a server:

* closed loop (the default): ``clients`` coroutines share one request budget and one deadline; each
  sends a request, waits for the answer, and sends the next (after a 429 or 503, once the
  ``Retry-After`` it carries has passed), so the server sees up to ``clients`` requests at once.
  This measures capacity: the throughput of a server kept busy.
* open loop (``rate_rps``): requests start at a fixed rate whether or not earlier ones were answered
  (up to ``clients`` at once; one that finds them all busy is counted as ``not_sent``), the way
  independent users arrive. Offered beyond capacity, this is an overload test: the server's queue
  fills and it must answer 429 rather than let latency grow without end.

Requests are spread over the adapters round-robin. The run stops when ``max_requests`` have been
sent or ``duration_s`` has passed, whichever comes first; ``recovery_s`` then adds a gentle phase
(one closed-loop client) that shows how soon, and how well, the server serves again. Only loopback
hosts are accepted: this is a measuring tool, not a way to load someone else's server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from lorascope.config import StrictModel
from lorascope.errors import ConfigError, LorascopeError

# Used when no GLUE folder is available: short single sentences and pairs like the dev sets'.
FALLBACK_INPUTS: list[str | list[str]] = [
    "a gripping, beautifully acted film",
    "the plot is thin and the jokes fall flat",
    ["The company said profits rose.", "Profits went up, the firm reported."],
    ["A man is playing a guitar.", "Nobody is making music."],
    "it never quite finds its footing",
    "an unexpectedly moving story about friendship",
]


class LoadConfig(StrictModel):
    """One load test."""

    url: str = Field("http://127.0.0.1:8000", description="server base URL (loopback hosts only)")
    clients: PositiveInt = Field(8, description="concurrent clients (each waits for its answer before sending again)")
    duration_s: PositiveFloat = Field(30.0, description="stop after this many seconds")
    max_requests: PositiveInt = Field(100_000, description="stop after this many requests")
    rows: PositiveInt = Field(1, description="inputs per request")
    adapters: list[str] | None = Field(None, description="adapters to cycle through (default: every adapter the server lists)")
    token: str | None = Field(None, description="bearer token, if the server needs one")
    timeout_s: PositiveFloat = Field(30.0, description="per-request timeout; a timed-out request counts as an error")
    rate_rps: PositiveFloat | None = Field(
        None, description="open loop: start this many requests per second whatever the answers (default: closed loop)"
    )
    recovery_s: float = Field(0.0, ge=0, description="after the run, one client for this many seconds, to see recovery")
    data_dir: str | None = Field(None, description="GLUE folder for request texts (default: $GLUE_DIR, else built-in sentences)")
    seed: int = Field(0, description="seeds which texts each request carries")


def retry_after_s(response: httpx.Response, cap_s: float = 10.0) -> float:
    """Seconds a 429 or 503 asks the client to wait (its ``Retry-After``, at most ``cap_s``); 0 otherwise."""
    if response.status_code not in (429, 503):
        return 0.0
    try:
        return min(max(float(response.headers.get("retry-after", 0)), 0.0), cap_s)
    except ValueError:  # an HTTP date rather than seconds: not sent by lorascope; no wait
        return 0.0


def check_loopback(url: str) -> httpx.URL:
    """Return ``url`` parsed if its host is loopback (``localhost``, 127.0.0.0/8, ``::1``).

    Raises:
        ConfigError: For another host, a scheme other than http(s), or an unparsable URL.
    """
    try:
        parsed = httpx.URL(url)
    except Exception:
        raise ConfigError(f"url {url!r}: not a URL") from None
    if parsed.scheme not in ("http", "https"):
        raise ConfigError(f"url {url!r}: use http:// or https://")
    host = parsed.host
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"url {url!r}: the load generator only targets loopback hosts (localhost, 127.0.0.1, ::1)")
    return parsed


def request_texts(adapters: dict[str, dict[str, Any]], data_dir: str | None, per_task: int = 200) -> dict[str, list[str | list[str]]]:
    """Adapter -> inputs from its GLUE task's dev set (pairs as [a, b]); built-in sentences otherwise.

    Args:
        adapters: Adapter name -> its ``GET /v1/adapters`` entry (``task``, ``input``).

    Only a local GLUE folder is used (never the Hub): a load test must not wait on the network.
    The built-in sentences are of the kind the adapter takes (``input``: single or pair).
    """
    from lorascope.data import load_split, resolve_glue_dir
    from lorascope.data.tasks import GLUE_TASKS

    out: dict[str, list[str | list[str]]] = {}
    glue = resolve_glue_dir(data_dir)
    for adapter, info in adapters.items():
        spec = GLUE_TASKS.get(info.get("task") or "")
        if spec is not None and info.get("input") not in (None, "pair" if spec.is_pair else "single"):
            spec = None  # a task of the user's own that shares a GLUE task's name, not that task
        try:
            if glue is None or spec is None:
                raise LorascopeError("no local dev set")
            ds = load_split(spec, "validation", glue)
            rows = ds.select(range(min(per_task, len(ds))))
            out[adapter] = [[a, b] if spec.is_pair else a for a, b in zip(rows["text_a"], rows["text_b"])]
        except LorascopeError:
            out[adapter] = _fallback_inputs(info.get("input"))
    return out


def _fallback_inputs(shape: str | None) -> list[str | list[str]]:
    """The built-in inputs of the kind the adapter takes (the server refuses pairs for single-text adapters and the reverse)."""
    if shape is None:
        return list(FALLBACK_INPUTS)
    return [x for x in FALLBACK_INPUTS if isinstance(x, list) == (shape == "pair")]


async def _adapters(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/adapters")
    if response.status_code != 200:
        raise LorascopeError(f"GET /v1/adapters answered {response.status_code}: {response.text[:200]}")
    return {a["name"]: a for a in response.json()["adapters"]}


def _summary(latencies: list[float]) -> dict[str, float | None]:
    """Mean, p50, p99 and max of latencies in ms (None when there are none)."""
    ok = np.asarray(latencies)
    if not ok.size:
        return {"mean": None, "p50": None, "p99": None, "max": None}
    return {"mean": float(ok.mean()), "p50": float(np.percentile(ok, 50)), "p99": float(np.percentile(ok, 99)),
            "max": float(ok.max())}


class _Tally:
    """Answers of one phase: statuses, latencies of admitted (200) and of refused (429) requests."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.rejected: list[float] = []
        self.per_adapter: Counter[str] = Counter()
        self.first_ok: float | None = None

    def add(self, adapter: str, status: str, ms: float) -> None:
        self.statuses[status] += 1
        if status == "200":
            self.latencies.append(ms)
            self.per_adapter[adapter] += 1
            if self.first_ok is None:
                self.first_ok = time.perf_counter()
        elif status == "429":
            self.rejected.append(ms)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.isdigit() and s.startswith("5"))


# Connections per httpx client. httpx's pool does work in proportion to its connections on every
# request, so one client holding hundreds of connections became the bottleneck: against a stub that
# answers after 2 s of sleep, 114 requests/s (about 230 in flight) got p99 7.4 s and cost 15.8 ms
# of client CPU per request. Spread over clients of 16 connections, the same load gets p99 ~2.0 s.
_SHARD = 16


class _Clients:
    """``ceil(n / _SHARD)`` httpx clients of at most ``_SHARD`` connections; each request takes the least busy."""

    def __init__(self, n: int, **kwargs: Any) -> None:
        size = min(n, _SHARD)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.clients = [httpx.AsyncClient(limits=limits, **kwargs) for _ in range(-(-n // size))]
        self.busy = [0] * len(self.clients)

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        k = min(range(len(self.busy)), key=self.busy.__getitem__)
        self.busy[k] += 1
        try:
            return await self.clients[k].post(path, json=body)
        finally:
            self.busy[k] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


async def run_load_async(cfg: LoadConfig) -> dict[str, Any]:
    """Run the load test; see :func:`run_load`."""
    base = check_loopback(cfg.url)
    headers = {"Authorization": f"Bearer {cfg.token}"} if cfg.token else {}
    http = _Clients(cfg.clients, base_url=base, headers=headers, timeout=cfg.timeout_s, trust_env=False)
    try:
        client = http.clients[0]
        try:
            listed = await _adapters(client)
        except httpx.HTTPError as err:
            raise LorascopeError(f"cannot reach {cfg.url}: {type(err).__name__}: {err}") from None
        names = cfg.adapters or list(listed)
        if not names:
            raise LorascopeError(f"{cfg.url} serves no adapters")
        texts = await asyncio.to_thread(request_texts, {n: listed.get(n, {}) for n in names}, cfg.data_dir)
        rng = np.random.default_rng(cfg.seed)
        issued = 0

        async def one(tally: _Tally) -> float:
            """Send one request and tally it; returns the seconds its answer asks to wait before the next."""
            nonlocal issued
            k = issued
            issued += 1
            adapter = names[k % len(names)]
            pool = texts[adapter]
            inputs = [pool[int(i)] for i in rng.integers(0, len(pool), cfg.rows)]
            sent = time.perf_counter()
            try:
                response = await http.post("/v1/classify", {"adapter": adapter, "inputs": inputs})
                status = str(response.status_code)
            except httpx.HTTPError as err:
                tally.add(adapter, type(err).__name__, (time.perf_counter() - sent) * 1e3)
                return 0.0
            tally.add(adapter, status, (time.perf_counter() - sent) * 1e3)
            return retry_after_s(response)

        main = _Tally()
        not_sent = 0
        start = time.perf_counter()
        deadline = start + cfg.duration_s
        if cfg.rate_rps is None:
            async def client_loop() -> None:
                while issued < cfg.max_requests and time.perf_counter() < deadline:
                    # A refused client waits as the server asked (a real client does; one that retries
                    # at once only adds refusals for the server to answer).
                    await asyncio.sleep(min(await one(main), max(0.0, deadline - time.perf_counter())))

            await asyncio.gather(*(client_loop() for _ in range(cfg.clients)))
        else:
            running: set[asyncio.Task[float]] = set()
            interval, due = 1.0 / cfg.rate_rps, start
            while issued + not_sent < cfg.max_requests and due < deadline:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += interval  # on schedule, however late the answers: an open loop does not wait for them
                if len(running) >= cfg.clients:
                    not_sent += 1
                    continue
                task = asyncio.create_task(one(main))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        elapsed = time.perf_counter() - start
        recovery = None
        if cfg.recovery_s > 0:
            calm = _Tally()
            calm_start = time.perf_counter()
            calm_deadline = calm_start + cfg.recovery_s
            while time.perf_counter() < calm_deadline:
                await asyncio.sleep(min(await one(calm), max(0.0, calm_deadline - time.perf_counter())))
            recovery = {
                "duration_s": time.perf_counter() - calm_start,
                "requests": int(sum(calm.statuses.values())),
                "ok": len(calm.latencies),
                "status_counts": dict(calm.statuses),
                "first_ok_after_s": None if calm.first_ok is None else calm.first_ok - calm_start,
                "latency_ms": _summary(calm.latencies),
            }
    finally:
        await http.aclose()
    ok = len(main.latencies)
    requests = int(sum(main.statuses.values()))
    return {
        "url": str(base),
        "clients": cfg.clients,
        "mode": "closed" if cfg.rate_rps is None else "open",
        "offered_rps": cfg.rate_rps,
        "rows_per_request": cfg.rows,
        "adapters": names,
        "duration_s": elapsed,
        "requests": requests,
        "ok": ok,
        "errors": requests - ok,
        "rejected_429": main.statuses.get("429", 0),
        "server_errors_5xx": main.server_errors,
        "not_sent": not_sent,
        "status_counts": dict(main.statuses),
        "throughput_rps": ok / elapsed if elapsed > 0 else 0.0,
        "rows_per_s": ok * cfg.rows / elapsed if elapsed > 0 else 0.0,
        "latency_ms": _summary(main.latencies),
        "rejected_latency_ms": _summary(main.rejected),
        "ok_per_adapter": dict(main.per_adapter),
        "stopped_by": "max_requests" if issued + not_sent >= cfg.max_requests else "duration",
        "recovery": recovery,
    }


def run_load(cfg: LoadConfig) -> dict[str, Any]:
    """Drive ``cfg.clients`` concurrent clients against ``cfg.url`` until the budget or the deadline.

    Returns:
        Requests sent, successes, errors (and counts per HTTP status or exception; 429s and 5xx
        separately), throughput (successful requests/s and rows/s), latency of admitted (200)
        requests and of refused (429) ones (mean, p50, p99, max, ms), and with ``recovery_s`` the
        recovery phase's answers (``first_ok_after_s``: seconds to the first 200 after the load).

    Raises:
        ConfigError: For a non-loopback URL.
        LorascopeError: When the server cannot be reached or lists no adapters.
    """
    return asyncio.run(run_load_async(cfg))
