"""HTTP load generator for ``lorascope serve``: concurrent clients, mixed adapters, loopback only.

``clients`` coroutines share one request budget and one deadline: each sends a request, waits for
the answer, and sends the next (closed loop), so the server sees up to ``clients`` requests at
once, spread over the adapters round-robin. The run stops by itself when ``max_requests`` have
been sent or ``duration_s`` has passed, whichever comes first. Only loopback hosts are accepted:
this is a measuring tool, not a way to load someone else's server.
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
    data_dir: str | None = Field(None, description="GLUE folder for request texts (default: $GLUE_DIR, else built-in sentences)")
    seed: int = Field(0, description="seeds which texts each request carries")


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


def request_texts(adapters: dict[str, dict], data_dir: str | None, per_task: int = 200) -> dict[str, list[str | list[str]]]:
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


async def _adapters(client: httpx.AsyncClient) -> dict[str, dict]:
    response = await client.get("/v1/adapters")
    if response.status_code != 200:
        raise LorascopeError(f"GET /v1/adapters answered {response.status_code}: {response.text[:200]}")
    return {a["name"]: a for a in response.json()["adapters"]}


async def run_load_async(cfg: LoadConfig) -> dict[str, Any]:
    """Run the load test; see :func:`run_load`."""
    base = check_loopback(cfg.url)
    headers = {"Authorization": f"Bearer {cfg.token}"} if cfg.token else {}
    limits = httpx.Limits(max_connections=cfg.clients, max_keepalive_connections=cfg.clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=cfg.timeout_s, limits=limits, trust_env=False) as client:
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
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        per_adapter: Counter[str] = Counter()
        start = time.perf_counter()
        deadline = start + cfg.duration_s

        async def client_loop() -> None:
            nonlocal issued
            while issued < cfg.max_requests and time.perf_counter() < deadline:
                k = issued
                issued += 1
                adapter = names[k % len(names)]
                pool = texts[adapter]
                inputs = [pool[int(i)] for i in rng.integers(0, len(pool), cfg.rows)]
                sent = time.perf_counter()
                try:
                    response = await client.post("/v1/classify", json={"adapter": adapter, "inputs": inputs})
                    status = str(response.status_code)
                except httpx.HTTPError as err:
                    status = type(err).__name__
                statuses[status] += 1
                if status == "200":
                    latencies.append((time.perf_counter() - sent) * 1e3)
                    per_adapter[adapter] += 1

        await asyncio.gather(*(client_loop() for _ in range(cfg.clients)))
        elapsed = time.perf_counter() - start
    ok = np.asarray(latencies)
    return {
        "url": str(base),
        "clients": cfg.clients,
        "rows_per_request": cfg.rows,
        "adapters": names,
        "duration_s": elapsed,
        "requests": int(sum(statuses.values())),
        "ok": int(ok.size),
        "errors": int(sum(statuses.values()) - ok.size),
        "status_counts": dict(statuses),
        "throughput_rps": ok.size / elapsed if elapsed > 0 else 0.0,
        "rows_per_s": ok.size * cfg.rows / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {
            "mean": float(ok.mean()) if ok.size else None,
            "p50": float(np.percentile(ok, 50)) if ok.size else None,
            "p99": float(np.percentile(ok, 99)) if ok.size else None,
            "max": float(ok.max()) if ok.size else None,
        },
        "ok_per_adapter": dict(per_adapter),
        "stopped_by": "max_requests" if issued >= cfg.max_requests else "duration",
    }


def run_load(cfg: LoadConfig) -> dict[str, Any]:
    """Drive ``cfg.clients`` concurrent clients against ``cfg.url`` until the budget or the deadline.

    Returns:
        Requests sent, successes, errors (and counts per HTTP status or exception), throughput
        (successful requests/s and rows/s), latency of successful requests (mean, p50, p99, max, ms).

    Raises:
        ConfigError: For a non-loopback URL.
        LorascopeError: When the server cannot be reached or lists no adapters.
    """
    return asyncio.run(run_load_async(cfg))
