"""The endpoint strategy: a running server that speaks vLLM's classification protocol, timed on the
benchmark's own requests beside the in-process runtime.

What is sent. Request ``k`` at batch size ``b`` goes to adapter ``names[k mod n]`` (``model`` = the
name the server serves it under) and carries ``b`` dev-set rows of that adapter's task as text: the
pool rows that feed the in-process strategies, in pool order, but grouped by adapter, because the
protocol names one ``model`` per request (and lorascope's server refuses a pair for a single-text
adapter, so the in-process strategies' mixed-task batches cannot be sent as they are). Single texts
go to ``POST /classify`` ``{"model", "input": [texts]}``; pairs of a two-label task to ``POST /score``
``{"model", "text_1": [...], "text_2": [...]}``, vLLM's way of sending pairs; pairs of a task with
more labels to ``/classify`` with ``[text_a, text_b]`` items (lorascope's extension of the protocol).

What it is compared with. ``runtime_inprocess`` is the lorascope runtime serving the *same* requests
in process: the same rows tokenised the same way and padded to the request's longest row, one
adapter per request, ``mode="auto"`` (the adapter's cached merged weights), which is what the
server's engine runs for a batch of one adapter. Both are timed in the benchmark's interleaved loop
with the same warm-up and request count, so ``overhead_ratio`` (endpoint mean latency / in-process
mean latency) gets a paired bootstrap interval like every ratio to the merged model, and whatever the
HTTP path adds (JSON encoding and decoding, HTTP parsing, the event loop, tokenisation, the
micro-batcher's wait) is in its numerator only. Endpoint latency is wall-clock on the client, from
the request being sent to its answer parsed.

Correctness. Every answer the endpoint gives while it is timed is compared with the in-process logits
of the same request: the predicted label (argmax of ``probs``; for a ``/score`` answer without
``probs``, label 1 when ``score`` >= 0.5) and, when the server is lorascope's own, every probability
within ``endpoint_atol``. A mismatch is recorded and reported, never raised.

Throughput. After the interleaved timing, for each batch size and each level of
``endpoint_concurrency``, that many clients (closed loop: each sends its next request when its answer
arrives) send the same requests; rows/s is rows answered per second of wall time, and p50/p99 the
per-request latency under that load.

Only loopback hosts are accepted unless ``allow_remote`` is set: this measures a server, it does not
load someone else's.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from lorascope.bench.inputs import Batch, PoolRow, pad_rows, request_stats
from lorascope.bench.timing import latency_summary, paired_ratio
from lorascope.bench.urls import is_loopback
from lorascope.errors import LorascopeError

if TYPE_CHECKING:
    import httpx

    from lorascope.bench.config import BenchConfig
    from lorascope.bench.strategies import Group, LoadContext
    from lorascope.data.tasks import TaskSpec
    from lorascope.models.base_recipe import BaseModelSpec
    from lorascope.serve import MultiAdapterRuntime

# The in-process counterpart of every endpoint row.
REFERENCE = "runtime_inprocess"
REFERENCE_DESCRIPTION = ("lorascope runtime in process, on the endpoint's requests (one adapter per request, "
                         "cached merges: what the server runs)")
# Mismatching rows listed in bench.json (the count is always complete).
MAX_MISMATCHES_LISTED = 10


class EndpointError(LorascopeError):
    """The endpoint cannot be reached, refused a request, or answered outside the protocol."""


# -------------------------------------------------------------------------------------------------
# Requests and answers.


@dataclass
class EndpointRequest:
    """One request, as the endpoint gets it and as the in-process runtime gets it.

    Attributes:
        adapter: The benchmark's name of the adapter serving it.
        route: ``/classify`` or ``/score``.
        body: The JSON body.
        batch: The same rows tokenised and padded, each input [rows, seq], for the in-process runtime.
    """

    adapter: str
    route: str
    body: dict[str, Any]
    batch: Batch

    @property
    def rows(self) -> int:
        return self.batch.size


def request_body(model: str, texts: list[str | tuple[str, str]], pair_task: bool, n_labels: int) -> tuple[str, dict[str, Any]]:
    """(route, JSON body) of a request classifying ``texts`` with the adapter the server calls ``model``."""
    if not pair_task:
        return "/classify", {"model": model, "input": list(texts)}
    if n_labels == 2:
        return "/score", {"model": model, "text_1": [t[0] for t in texts], "text_2": [t[1] for t in texts]}
    return "/classify", {"model": model, "input": [[t[0], t[1]] for t in texts]}


def build_requests(
    pool: list[PoolRow], adapters: list[str], served: dict[str, str], tasks: dict[str, TaskSpec],
    n_labels: dict[str, int], batch_size: int, n_requests: int, base: BaseModelSpec, device: torch.device,
) -> list[EndpointRequest]:
    """``n_requests`` requests of ``batch_size`` rows, request ``k`` for adapter ``adapters[k mod n]``.

    Each adapter's rows are taken in pool order, wrapping round when its requests need more rows than
    the pool holds for it.
    """
    own = {a: [r for r in pool if r.adapter == a] for a in adapters}
    out = []
    for k in range(n_requests):
        a = adapters[k % len(adapters)]
        start = (k // len(adapters)) * batch_size
        rows = [own[a][(start + i) % len(own[a])] for i in range(batch_size)]
        route, body = request_body(served[a], [r.text for r in rows], tasks[a].is_pair, n_labels[a])
        out.append(EndpointRequest(a, route, body, pad_rows(rows, base, device)))
    return out


@dataclass(frozen=True)
class Answer:
    """What the endpoint answered for one request.

    Attributes:
        labels: Predicted label id per row, shape [rows].
        probs: Probabilities per row, shape [rows, n_labels]; for a ``/score`` answer without them
            (vLLM's), ``[1 - score, score]``.
    """

    labels: npt.NDArray[np.int64]
    probs: npt.NDArray[np.float64]


def parse_answer(request: EndpointRequest, data: Any) -> Answer:
    """The labels (and probabilities) in ``data``, the ``data`` list of a classify or score answer.

    Raises:
        EndpointError: When ``data`` is not one item per row with ``probs`` (``/classify``) or
            ``score`` (``/score``).
    """
    where = f"{request.route} for adapter '{request.adapter}'"
    if not isinstance(data, list) or len(data) != request.rows or not all(isinstance(d, dict) for d in data):
        raise EndpointError(f"{where}: expected 'data' with {request.rows} items, got {str(data)[:200]}")
    items = sorted(data, key=lambda d: d.get("index", 0))
    try:
        if all("probs" in d for d in items):
            probs = np.asarray([d["probs"] for d in items], dtype=np.float64)
            return Answer(probs.argmax(-1), probs)
        if request.route == "/score":
            score = np.asarray([d["score"] for d in items], dtype=np.float64)
            return Answer((score >= 0.5).astype(np.int64), np.stack([1 - score, score], -1))
    except (KeyError, TypeError, ValueError) as err:
        raise EndpointError(f"{where}: an answer item is malformed ({type(err).__name__}: {err})") from None
    raise EndpointError(f"{where}: answer items carry no 'probs'")


# -------------------------------------------------------------------------------------------------
# The server.


@dataclass(frozen=True)
class ServerInfo:
    """What ``GET /v1/models`` says about the server.

    Attributes:
        owned_by: The ``owned_by`` of its cards (``lorascope``, ``vllm`` ...), or None.
        models: Every model id it lists (base and adapters).
    """

    owned_by: str | None
    models: tuple[str, ...]

    @property
    def is_lorascope(self) -> bool:
        return self.owned_by == "lorascope"


def _error_text(response: httpx.Response) -> str:
    """The message of an error answer: vLLM's ``{"error": {"message"}}``, lorascope's ``{"detail"}``, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if body.get("detail"):
            return str(body["detail"])[:200]
    return response.text[:200]


class EndpointClient:
    """A keep-alive HTTP client of one endpoint (what the interleaved loop times).

    Args:
        url: Base URL.
        token: Bearer token, if the server needs one (vLLM's ``--api-key``, lorascope's ``--token``).
        timeout_s: Per-request timeout.
    """

    def __init__(self, url: str, token: str | None, timeout_s: float) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s
        # trust_env=False: no proxy from the environment between the client and the server it measures.
        self._http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, route: str, body: dict[str, Any] | None = None) -> httpx.Response:
        import httpx

        try:
            return self._http.request(method, route, json=body)
        except httpx.HTTPError as err:
            raise EndpointError(f"cannot reach {self.url}{route}: {type(err).__name__}: {err}") from None

    def server_info(self) -> ServerInfo:
        """``GET /v1/models``: the models the server lists and who it says owns them."""
        response = self._send("GET", "/v1/models")
        if response.status_code != 200:
            raise EndpointError(f"{self.url}/v1/models answered {response.status_code}: {_error_text(response)}")
        try:
            cards = response.json()["data"]
            ids = tuple(str(c["id"]) for c in cards)
        except (ValueError, KeyError, TypeError):
            raise EndpointError(f"{self.url}/v1/models: not a model list ({response.text[:200]})") from None
        owners = [c.get("owned_by") for c in cards if isinstance(c, dict) and c.get("owned_by")]
        return ServerInfo(str(owners[0]) if owners else None, ids)

    def post(self, request: EndpointRequest) -> Any:
        """Send ``request`` and return the ``data`` of its answer (JSON parsed, as a client must).

        Raises:
            EndpointError: When the server cannot be reached or answers anything but 200.
        """
        response = self._send("POST", request.route, request.body)
        if response.status_code != 200:
            raise EndpointError(f"{self.url}{request.route} for adapter '{request.adapter}' (model "
                                f"'{request.body['model']}') answered {response.status_code}: {_error_text(response)}")
        try:
            return response.json()["data"]
        except (ValueError, KeyError, TypeError):
            raise EndpointError(f"{self.url}{request.route}: the answer has no 'data' ({response.text[:200]})") from None


def served_names(cfg: BenchConfig, adapters: list[str]) -> dict[str, str]:
    """Adapter -> the name the endpoint serves it under (``endpoint_models``, else its own name).

    Raises:
        LorascopeError: For a served name given for an adapter that is not benchmarked, or a list of
            another length than the adapters.
    """
    given = cfg.endpoint_models
    if isinstance(given, list):
        if len(given) != len(adapters):
            raise LorascopeError(f"endpoint_models lists {len(given)} served names for {len(adapters)} adapters "
                                 f"({', '.join(adapters)}); give one per adapter, or adapter=name pairs")
        return dict(zip(adapters, given))
    unknown = sorted(set(given) - set(adapters))
    if unknown:
        raise LorascopeError(f"endpoint_models: '{unknown[0]}' is not one of the adapters ({', '.join(adapters)})")
    return {a: given.get(a, a) for a in adapters}


def check_served(info: ServerInfo, served: dict[str, str], url: str) -> None:
    """Raise :class:`EndpointError` unless the server lists every served name."""
    missing = [f"{name} (adapter {a})" if name != a else name for a, name in served.items() if name not in info.models]
    if missing:
        listed = ", ".join(info.models) or "nothing"
        raise EndpointError(f"{url} does not serve {', '.join(missing)}; GET /v1/models lists {listed} "
                            "(map names with --endpoint-model adapter=served_name)")


# -------------------------------------------------------------------------------------------------
# The in-process counterpart.


def reference_runtime(groups: dict[str, Group], ctx: LoadContext) -> tuple[MultiAdapterRuntime, str | None, float]:
    """A lorascope runtime holding every adapter: a loaded group's when one holds them all, else a new one.

    Returns:
        (runtime, the group it belongs to or None when loaded here, seconds it took to load).
    """
    from lorascope.serve import MultiAdapterRuntime

    names = [a.name for a in ctx.adapters]
    for group in groups.values():
        if isinstance(group.model, MultiAdapterRuntime) and group.adapters == names:
            return group.model, group.name, group.load_s
    start = time.perf_counter()
    runtime = MultiAdapterRuntime.from_folders(ctx.base.load(ctx.dtype, ctx.device), {a.name: a.folder for a in ctx.adapters},
                                               ctx.merged_cache_size)
    return runtime, None, time.perf_counter() - start


@dataclass
class Recorded:
    """What the two timed calls returned, per request step (compared once timing is over)."""

    answers: dict[int, Any] = field(default_factory=dict)
    logits: dict[int, torch.Tensor] = field(default_factory=dict)


def timed_calls(client: EndpointClient, runtime: MultiAdapterRuntime, requests: list[EndpointRequest],
                record: Recorded) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """(endpoint call, in-process call) serving request ``step``; each keeps what it got in ``record``."""

    def over_http(step: int) -> None:
        record.answers[step] = client.post(requests[step])

    def in_process(step: int) -> None:
        inputs = dict(requests[step].batch.inputs)
        ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
        record.logits[step] = runtime.predict_logits(ids, mask, requests[step].adapter, mode="auto", **inputs)

    return over_http, in_process


# -------------------------------------------------------------------------------------------------
# Correctness.


@dataclass
class EndpointCheck:
    """The endpoint's answers against the in-process runtime's on the same requests.

    Attributes:
        rows: Rows compared.
        agreeing: Rows with the same predicted label.
        max_abs_prob_diff: Largest |probability difference| (None before any row is compared).
        tolerance: Bound on it (None: labels only, for servers other than lorascope's).
        mismatches: Total rows whose label differs.
        listed: The first of them (batch size, request, row, adapter, both labels).
    """

    rows: int = 0
    agreeing: int = 0
    max_abs_prob_diff: float | None = None
    tolerance: float | None = None
    mismatches: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, batch_size: int, step: int, request: EndpointRequest, answer: Answer, logits: torch.Tensor) -> None:
        want = torch.softmax(logits.double().cpu(), -1).numpy()  # [rows, n_labels]
        want_labels = want.argmax(-1)
        same = answer.labels == want_labels
        self.rows += len(same)
        self.agreeing += int(same.sum())
        # A head of another width than the adapter's is as wrong as wrong probabilities.
        diff = float(np.abs(answer.probs - want).max()) if answer.probs.shape == want.shape else float("inf")
        self.max_abs_prob_diff = max(self.max_abs_prob_diff or 0.0, diff)
        for row in np.flatnonzero(~same):
            self.mismatches += 1
            if len(self.listed) < MAX_MISMATCHES_LISTED:
                self.listed.append({"batch_size": batch_size, "request": step, "row": int(row), "adapter": request.adapter,
                                    "endpoint_label": int(answer.labels[row]), "inprocess_label": int(want_labels[row])})

    @property
    def agreement(self) -> float:
        return self.agreeing / self.rows if self.rows else float("nan")

    @property
    def passed(self) -> bool:
        within = self.tolerance is None or (self.max_abs_prob_diff is not None and self.max_abs_prob_diff <= self.tolerance)
        return self.rows > 0 and self.mismatches == 0 and within

    def to_dict(self, compared_with: str) -> dict[str, Any]:
        return {"compared_with": compared_with, "rows": self.rows, "agreement": self.agreement,
                "mismatches": self.mismatches, "max_abs_prob_diff": self.max_abs_prob_diff, "tolerance": self.tolerance,
                "passed": self.passed, "first_mismatches": self.listed}


# -------------------------------------------------------------------------------------------------
# Throughput under concurrency.


async def _sweep_level(client: EndpointClient, requests: list[EndpointRequest], concurrency: int, warmup: int,
                       measured: int) -> tuple[list[float], Counter[str], float]:
    """One closed-loop level: (latencies of 200 answers in ms, statuses of the others, wall seconds measured).

    Requests ``0 .. warmup-1`` warm up and ``warmup ..`` are measured, as in the interleaved loop. A
    refused request (429, 503) counts as an error, and its client waits the ``Retry-After`` the
    answer carries before its next request.
    """
    import httpx

    from lorascope.serve.http.loadgen import retry_after_s

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=client.url, headers=client.headers, timeout=client.timeout_s, limits=limits,
                                 trust_env=False) as http:

        async def run(first: int, budget: int, latencies: list[float] | None, statuses: Counter[str]) -> None:
            counter = itertools.count()

            async def worker() -> None:
                while (k := next(counter)) < budget:
                    request = requests[(first + k) % len(requests)]
                    sent = time.perf_counter()
                    try:
                        response = await http.post(request.route, json=request.body)
                        status = str(response.status_code)
                        if response.status_code == 200:
                            response.json()  # parsed, as the interleaved client's answers are
                    except httpx.HTTPError as err:
                        status, response = type(err).__name__, None
                    if status == "200" and latencies is not None:
                        latencies.append((time.perf_counter() - sent) * 1e3)
                    elif status != "200":
                        statuses[status] += 1
                        if response is not None:  # refused: wait as the server asks, as a real client does
                            await asyncio.sleep(retry_after_s(response))

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        # Warm-up opens every connection and lets the server settle at this level before anything is timed.
        await run(0, max(warmup, concurrency), None, Counter())
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        start = time.perf_counter()
        await run(warmup, measured, latencies, statuses)
        return latencies, statuses, time.perf_counter() - start


def concurrency_sweep(client: EndpointClient, requests: dict[int, list[EndpointRequest]], cfg: BenchConfig,
                      inprocess_rps: dict[int, float], on_level: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Throughput and latency of the endpoint with 1..C concurrent clients, per batch size.

    Args:
        client: The endpoint (its URL, headers and timeout are reused by the concurrent clients).
        requests: Batch size -> the requests (the measured ones start after ``cfg.warmup``).
        cfg: Warm-up, request count, concurrency levels, bootstrap settings.
        inprocess_rps: Batch size -> rows/s of the in-process runtime serving one request at a time.
        on_level: Called after each level (progress display).

    Returns:
        One JSON-ready dict per (batch size, concurrency): rows/s and requests/s over the measured
        wall time, latency percentiles of the answered requests (with the bootstrap interval of the
        median), errors by status, and rows/s relative to the in-process runtime's.
    """
    out = []
    for b, reqs in requests.items():
        for c in cfg.endpoint_concurrency:
            latencies, statuses, wall = asyncio.run(_sweep_level(client, reqs, c, cfg.warmup, cfg.requests))
            ms = np.asarray(latencies)
            row: dict[str, Any] = {"batch_size": b, "concurrency": c, "requests": cfg.requests, "n": int(ms.size),
                                   "errors": int(sum(statuses.values())), "status_counts": {str(k): v for k, v in statuses.items()}, "wall_s": wall}
            stats = latency_summary(ms, b, cfg.bootstrap_resamples, cfg.seed) if ms.size >= 2 else {}
            for key in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "p50_ci_low_ms", "p50_ci_high_ms"):
                row[key] = stats.get(key)
            row["throughput_rps"] = b * ms.size / wall if wall > 0 else None  # rows answered per second, all clients
            row["requests_per_s"] = ms.size / wall if wall > 0 else None
            ref = inprocess_rps.get(b)
            row["inprocess_throughput_rps"] = ref
            row["throughput_vs_inprocess"] = row["throughput_rps"] / ref if ref and row["throughput_rps"] else None
            out.append(row)
            if on_level is not None:
                on_level()
    return out


# -------------------------------------------------------------------------------------------------
# bench.json.


def overhead(endpoint_ms: npt.NDArray[np.float64], inprocess_ms: npt.NDArray[np.float64], resamples: int, seed: int) -> dict[str, Any]:
    """The HTTP path's cost at one batch size: endpoint latency over in-process latency, paired by step.

    Args:
        endpoint_ms: Endpoint milliseconds per request, shape [n].
        inprocess_ms: In-process milliseconds of the same requests, shape [n], paired by step.

    Returns:
        ``overhead_ratio`` (ratio of means) with its paired 95% BCa interval, ``p50_overhead_ratio``
        (ratio of medians) and ``added_ms`` (difference of means).
    """
    r = paired_ratio(endpoint_ms, inprocess_ms, resamples, seed)
    return {"overhead_ratio": r["ratio"], "overhead_ci_low": r["ci_low"], "overhead_ci_high": r["ci_high"],
            "p50_overhead_ratio": r["p50_ratio"], "added_ms": float(endpoint_ms.mean() - inprocess_ms.mean())}


@dataclass
class EndpointRun:
    """Everything the benchmark holds about the endpoint between loading and bench.json.

    Attributes:
        client: The endpoint's client.
        info: What ``GET /v1/models`` said.
        url: The endpoint as configured.
        label: ``<label>`` of the ``endpoint:<label>`` rows.
        served: Adapter -> name the endpoint serves it under.
        runtime: The in-process counterpart.
        shared_group: The benchmark group whose runtime it is (None: loaded for the endpoint).
        reference_load_s: Seconds that runtime took to load.
        requests: Batch size -> requests, shape [warmup + requests] each.
        records: Batch size -> what both timed calls returned.
        concurrency: The sweep's rows (filled by :meth:`sweep`).
    """

    client: EndpointClient
    info: ServerInfo
    url: str
    label: str
    served: dict[str, str]
    runtime: MultiAdapterRuntime
    shared_group: str | None
    reference_load_s: float
    requests: dict[int, list[EndpointRequest]]
    records: dict[int, Recorded] = field(default_factory=dict)
    concurrency: list[dict[str, Any]] = field(default_factory=list)

    @property
    def strategy(self) -> str:
        return f"endpoint:{self.label}"

    def calls(self, batch_size: int) -> dict[str, Callable[[int], None]]:
        """The two strategies to time at ``batch_size``: in-process first, then over HTTP."""
        record = self.records.setdefault(batch_size, Recorded())
        over_http, in_process = timed_calls(self.client, self.runtime, self.requests[batch_size], record)
        return {REFERENCE: in_process, self.strategy: over_http}

    def prime(self) -> None:
        """Serve each adapter once in process, so a runtime loaded here has its merged weights cached (as the server has)."""
        for request in self.requests[min(self.requests)][: len(self.served)]:
            inputs = dict(request.batch.inputs)
            ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
            self.runtime.predict_logits(ids, mask, request.adapter, mode="auto", **inputs)

    def check(self, tolerance: float) -> EndpointCheck:
        """Every recorded answer against the in-process logits of the same request (warm-up included)."""
        result = EndpointCheck(tolerance=tolerance if self.info.is_lorascope else None)
        for b, record in self.records.items():
            for step, data in sorted(record.answers.items()):
                request = self.requests[b][step]
                result.add(b, step, request, parse_answer(request, data), record.logits[step])
        return result

    def sweep(self, cfg: BenchConfig, inprocess_rps: dict[int, float], on_level: Callable[[], None] | None = None) -> None:
        """Fill :attr:`concurrency` (see :func:`concurrency_sweep`)."""
        self.concurrency = concurrency_sweep(self.client, self.requests, cfg, inprocess_rps, on_level)

    def section(self, cfg: BenchConfig, check: EndpointCheck, overheads: dict[int, dict[str, Any]],
                times: dict[int, dict[str, npt.NDArray[np.float64]]]) -> dict[str, Any]:
        """bench.json's ``endpoint`` section."""
        routes: dict[str, str] = {}
        for reqs in self.requests.values():
            for r in reqs:
                routes.setdefault(r.adapter, r.route)
        rows = []
        for b, o in overheads.items():
            ep, ref = times[b][self.strategy], times[b][REFERENCE]
            rows.append({"batch_size": b, "inprocess_mean_ms": float(ref.mean()), "endpoint_mean_ms": float(ep.mean()),
                         "inprocess_p50_ms": float(np.median(ref)), "endpoint_p50_ms": float(np.median(ep)),
                         "inprocess_p99_ms": float(np.percentile(ref, 99)), "endpoint_p99_ms": float(np.percentile(ep, 99)),
                         **o})
        host = urllib.parse.urlsplit(self.url).hostname or ""
        return {
            "url": self.url,
            "strategy": self.strategy,
            "reference": REFERENCE,
            "reference_description": REFERENCE_DESCRIPTION,
            "reference_runtime": self.shared_group or "loaded for the endpoint",
            "reference_load_s": self.reference_load_s,
            "owned_by": self.info.owned_by,
            "lorascope_server": self.info.is_lorascope,
            "remote": not is_loopback(host),
            "models": self.served,
            "routes": routes,
            "requests": {str(b): request_stats([r.batch for r in reqs[cfg.warmup:]]) for b, reqs in self.requests.items()},
            "overhead": rows,
            "concurrency": self.concurrency,
            "check": check.to_dict(f"{REFERENCE}: the same requests' logits, softmaxed"),
        }


def open_endpoint(cfg: BenchConfig, token: str | None) -> tuple[EndpointClient, ServerInfo]:
    """Connect to ``cfg.endpoint`` and ask what it serves: before any model loads, so a server that is down costs nothing.

    Raises:
        MissingExtraError: Without httpx (the serve extra).
        EndpointError: When it cannot be reached or does not answer ``GET /v1/models``.
    """
    from lorascope.extras import require

    require("serve", "httpx", by="lorascope bench --endpoint")
    assert cfg.endpoint is not None  # called only when an endpoint is configured
    client = EndpointClient(cfg.endpoint, token, cfg.endpoint_timeout_s)
    try:
        return client, client.server_info()
    except BaseException:
        client.close()
        raise


def start_endpoint_run(cfg: BenchConfig, client: EndpointClient, info: ServerInfo, served: dict[str, str],
                       pool: list[PoolRow], tasks: dict[str, TaskSpec], groups: dict[str, Group], ctx: LoadContext) -> EndpointRun:
    """Find or load the in-process runtime, build the requests, and prime the runtime.

    Args:
        cfg: The benchmark configuration.
        client: The endpoint, from :func:`open_endpoint`.
        info: What it serves (checked against ``served`` by :func:`check_served` before models load).
        served: Adapter -> name the endpoint serves it under.
        pool: The benchmark's request rows.
        tasks: Adapter -> task (pair tasks are sent as pairs).
        groups: The loaded strategy groups (a runtime holding every adapter is reused).
        ctx: What groups are built from.
    """
    assert cfg.endpoint is not None  # called only when an endpoint is configured
    names = [a.name for a in ctx.adapters]
    runtime, shared, load_s = reference_runtime(groups, ctx)
    n_labels = {a: runtime.n_labels(a) for a in names}
    n_steps = cfg.warmup + cfg.requests
    requests = {b: build_requests(pool, names, served, tasks, n_labels, b, n_steps, ctx.base, ctx.device)
                for b in cfg.batch_sizes}
    # The label names rows of bench.json and columns of bench.csv: keep it to a safe alphabet.
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg.endpoint_label or info.owned_by or "http")[:64]
    endpoint = EndpointRun(client, info, cfg.endpoint, label, served, runtime, shared, load_s, requests)
    endpoint.prime()
    return endpoint
