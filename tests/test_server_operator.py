"""Running the server: metrics, liveness and readiness, the bounded queue, the deadline, draining on shutdown, logs.

The model is the 2-layer random ``tiny-llama`` with two synthetic adapters. To hold requests in the
queue, a :class:`Valve` wraps the micro-batcher's worker function: a forward pass waits until the
test opens it, which is how a slow model fills the queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lorascope.bench.synthetic import make_synthetic_adapters
from lorascope.models.base_recipe import open_base
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http import AdapterMeta, ServerSettings, TextEncoder, create_app, make_server
from lorascope.serve.http.service import Loaded
from tests.helpers import free_port, serving

pytestmark = pytest.mark.usefixtures("single_thread")

TOKEN = "op-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = {"adapter": "sst2", "inputs": ["a fine film"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("operator-adapters")
    spec = open_base("tiny-llama", ("negative", "positive"), seed=0)
    sources = make_synthetic_adapters(spec, ["sst2", "mrpc"], 2, root, r=4, alpha=8, targets=None, seed=1)
    return spec, sources


def load(setup) -> Loaded:
    spec, sources = setup
    runtime = MultiAdapterRuntime.from_folders(spec.load("fp32", "cpu"), {s.name: s.folder for s in sources})
    meta = {s.name: AdapterMeta(s.label_names, s.task) for s in sources}
    return Loaded(runtime, TextEncoder(spec.tokenizer, spec.is_decoder, max_length=32), meta)


def make_app(setup, **settings):
    loaded = load(setup)
    return create_app(loaded.runtime, loaded.encoder, ServerSettings(**settings), loaded.meta)


class Valve:
    """Wraps the batcher's worker function: each forward pass waits until the valve opens."""

    def __init__(self, process) -> None:
        self.process = process
        self.opened = threading.Event()
        self.entered = threading.Event()

    def __call__(self, jobs):
        self.entered.set()
        self.opened.wait(timeout=20)
        return self.process(jobs)


def scrape(client, headers=None) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics, parsed by prometheus_client: (name, sorted labels) -> value."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def requests_count(samples, route: str, method: str, status: int) -> float:
    return samples.get(("lorascope_http_requests_total", (("method", method), ("route", route), ("status", str(status)))), 0.0)


def test_metrics_count_requests_batches_and_adapters(setup):
    with TestClient(make_app(setup, token=TOKEN)) as client:
        assert client.get("/metrics").status_code == 401  # behind the token like everything but the probes
        before = scrape(client, AUTH)
        for _ in range(3):
            assert client.post("/v1/classify", json=GOOD, headers=AUTH).status_code == 200
        assert client.post("/v1/classify", json={"adapter": "nope", "inputs": ["x"]}, headers=AUTH).status_code == 404
        assert client.post("/classify", json={"model": "sst2", "input": ["x", "y"]}, headers=AUTH).status_code == 200
        assert client.delete("/v1/adapters/nope", headers=AUTH).status_code == 404
        assert client.get("/v2/anything", headers=AUTH).status_code == 404
        assert client.get("/healthz").status_code == 200
        after = scrape(client, AUTH)

    def moved(route, method, status):
        return requests_count(after, route, method, status) - requests_count(before, route, method, status)

    assert moved("/v1/classify", "POST", 200) == 3 and moved("/v1/classify", "POST", 404) == 1
    assert moved("/classify", "POST", 200) == 1
    assert moved("/v1/adapters/{name}", "DELETE", 404) == 1  # the route template, not the raw path
    assert moved("unmatched", "GET", 404) == 1
    assert moved("/healthz", "GET", 200) == 1
    assert moved("/metrics", "GET", 200) == 1 and moved("/metrics", "GET", 401) == 0  # the 401 came before `before`
    assert requests_count(after, "/metrics", "GET", 401) == 1
    latency = ("lorascope_http_request_duration_seconds_count", (("method", "POST"), ("route", "/v1/classify")))
    assert after[latency] - before.get(latency, 0) == 4
    # Each of the four served requests ran in its own forward pass: 5 rows in all.
    assert after[("lorascope_batch_rows_count", ())] - before.get(("lorascope_batch_rows_count", ()), 0) == 4
    assert after[("lorascope_batch_rows_sum", ())] - before.get(("lorascope_batch_rows_sum", ()), 0) == 5
    assert after[("lorascope_batch_requests_sum", ())] - before.get(("lorascope_batch_requests_sum", ()), 0) == 4
    assert after[("lorascope_batch_duration_seconds_count", ())] == after[("lorascope_batch_rows_count", ())]
    assert after[("lorascope_adapters_loaded", ())] == 2 and after[("lorascope_ready", ())] == 1
    assert after[("lorascope_queue_depth", ())] == 0 and after[("lorascope_queue_limit", ())] == 128
    assert after[("lorascope_mixed_batches_total", ())] == 0
    assert all(after[("lorascope_requests_rejected_total", (("reason", r),))] == 0
               for r in ("queue_full", "deadline", "draining", "loading"))


def test_readiness_waits_for_the_model_and_liveness_does_not(setup):
    release = threading.Event()

    def slow_loader() -> Loaded:
        release.wait(timeout=20)
        return load(setup)

    app = create_app(None, settings=ServerSettings(token=TOKEN), loader=slow_loader, base_name="tiny-llama")
    with TestClient(app) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "loading" and ready.headers["retry-after"] == "1"
        assert client.get("/healthz").status_code == 200 and client.get("/healthz").json()["status"] == "loading"
        assert client.get("/health").status_code == 200
        busy = client.post("/v1/classify", json=GOOD, headers=AUTH)
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "loading" and busy.headers["retry-after"] == "1"
        vllm = client.post("/classify", json={"model": "sst2", "input": "x"}, headers=AUTH)
        assert vllm.status_code == 503 and vllm.json()["error"]["type"] == "ServiceUnavailableError"
        assert scrape(client, AUTH)[("lorascope_ready", ())] == 0
        release.set()
        deadline = time.time() + 20
        while client.get("/ready").status_code != 200 and time.time() < deadline:
            time.sleep(0.02)
        assert client.get("/ready").json()["status"] == "ready"
        assert app.state.engine is not None
        assert client.post("/v1/classify", json=GOOD, headers=AUTH).status_code == 200
        assert [m["id"] for m in client.get("/v1/models", headers=AUTH).json()["data"]] == ["tiny-llama", "sst2", "mrpc"]


def test_a_failed_load_fails_both_probes(setup):
    def broken() -> Loaded:
        raise OSError("no such model")

    app = create_app(None, settings=ServerSettings(), loader=broken)
    with TestClient(app) as client:
        deadline = time.time() + 10
        while app.state.lifecycle.state == "loading" and time.time() < deadline:
            time.sleep(0.02)
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "failed" and "no such model" in ready.json()["error"]
        assert client.get("/healthz").status_code == 503 and client.get("/health").status_code == 503
        assert client.post("/v1/classify", json=GOOD).json()["error"]["code"] == "load_failed"


async def _fill(app, valve: Valve, extra: int) -> tuple[httpx.Response, list[httpx.Response], list[asyncio.Task]]:
    """One request into the (held) forward pass, then ``extra`` more; returns the first, the quick answers, the rest."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        first = asyncio.create_task(client.post("/v1/classify", json=GOOD))
        while not valve.entered.is_set():
            await asyncio.sleep(0.01)
        rest = [asyncio.create_task(client.post("/v1/classify", json={"adapter": "sst2", "inputs": [f"text {i}"]}))
                for i in range(extra)]
        await asyncio.wait(rest, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0.2)  # every refusal is immediate; give the last ones a moment
        quick = [t.result() for t in rest if t.done()]
        valve.opened.set()
        answered = await asyncio.gather(first, *rest)
        return answered[0], quick, answered[1:]


def test_a_full_queue_answers_429_with_retry_after_and_admitted_requests_complete(setup):
    # One row per forward pass, two requests may wait: with the first held in the model, two more are
    # admitted and the rest are refused at once.
    app = make_app(setup, max_batch_size=1, max_batch_rows=1, max_queue=2, retry_after_s=3)
    valve = Valve(app.state.batcher.process)
    app.state.batcher.process = valve

    async def run():
        async with app.router.lifespan_context(app):
            return await _fill(app, valve, extra=5)

    first, quick, rest = asyncio.run(run())
    assert first.status_code == 200
    refused = [r for r in rest if r.status_code == 429]
    assert len(refused) == 3 and all(r in quick for r in refused)
    for r in refused:
        assert r.headers["retry-after"] == "3" and r.json()["error"]["code"] == "queue_full"
    assert sorted(r.status_code for r in rest) == [200, 200, 429, 429, 429]
    assert app.state.batcher.waiting == 0
    assert app.state.metrics.rejected.labels("queue_full")._value.get() == 3


def test_a_missed_deadline_is_503_with_retry_after_not_an_endless_wait(setup):
    app = make_app(setup, max_batch_size=1, max_batch_rows=1, request_timeout_s=0.3)
    valve = Valve(app.state.batcher.process)
    app.state.batcher.process = valve

    async def run():
        async with app.router.lifespan_context(app):
            started = time.perf_counter()
            first, _, rest = await _fill(app, valve, extra=1)
            return first, rest[0], time.perf_counter() - started

    first, waiting, _ = asyncio.run(run())
    for response in (first, waiting):  # the one held in the model and the one queued behind it
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "timeout"
    assert app.state.metrics.rejected.labels("deadline")._value.get() == 2
    assert app.state.batcher.waiting == 0


def test_draining_refuses_new_work_with_503_but_keeps_the_probes(setup):
    app = make_app(setup)
    with TestClient(app) as client:
        assert client.post("/v1/classify", json=GOOD).status_code == 200
        app.state.lifecycle.begin_drain(5.0)
        for response in (client.post("/v1/classify", json=GOOD), client.get("/v1/adapters")):
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "shutting_down"
        vllm = client.post("/classify", json={"model": "sst2", "input": "x"})
        assert vllm.status_code == 503 and vllm.json()["error"]["code"] == 503
        assert client.get("/ready").status_code == 503 and client.get("/ready").json()["status"] == "draining"
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
        assert scrape(client)[("lorascope_requests_rejected_total", (("reason", "draining"),))] == 3



def test_graceful_shutdown_finishes_requests_in_flight_and_refuses_new_ones(setup):
    app = make_app(setup, graceful_shutdown_s=10)
    valve = Valve(app.state.batcher.process)
    app.state.batcher.process = valve
    port = free_port()
    server = make_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        in_flight: list[httpx.Response] = []
        slow = threading.Thread(target=lambda: in_flight.append(httpx.post(f"{url}/v1/classify", json=GOOD, timeout=30)))
        slow.start()
        assert valve.entered.wait(timeout=10)
        server.drain()  # what SIGTERM does
        refused = httpx.post(f"{url}/v1/classify", json=GOOD, timeout=10)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert httpx.get(f"{url}/ready", timeout=10).status_code == 503
        assert thread.is_alive()  # still waiting for the request in flight
        valve.opened.set()
        slow.join(timeout=10)
        assert in_flight and in_flight[0].status_code == 200, in_flight
        thread.join(timeout=10)
        assert not thread.is_alive()  # drained, then stopped by itself
    finally:
        valve.opened.set()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.slow
def test_open_loop_load_past_capacity_gets_429s_not_5xx_and_recovers(setup):
    from lorascope.serve.http.loadgen import LoadConfig, run_load

    app = make_app(setup, max_batch_size=1, max_batch_rows=1, max_queue=2)
    real = app.state.batcher.process

    def slow(jobs):  # about 20 forward passes a second: far below the offered 150 requests a second
        time.sleep(0.05)
        return real(jobs)

    app.state.batcher.process = slow
    with serving(app, timeout_s=20) as url:
        result = run_load(LoadConfig(url=url, clients=64, duration_s=1.0, rate_rps=150,
                                     recovery_s=0.5, adapters=["sst2"]))
    assert result["mode"] == "open" and result["offered_rps"] == 150
    assert result["rejected_429"] > 0 and result["server_errors_5xx"] == 0 and result["ok"] > 0
    assert result["requests"] == result["ok"] + result["rejected_429"]  # nothing else: no 5xx, no transport errors
    assert result["rejected_latency_ms"]["p99"] is not None
    recovery = result["recovery"]
    assert recovery["ok"] == recovery["requests"] > 0 and recovery["first_ok_after_s"] is not None


def _overloaded(setup, **settings) -> dict:
    """2.5x the capacity of a model costing 25 ms a row, for 3 s, open loop: the load test's result.

    The load generator shares this process (and its GIL) with the server, so the offered rate is
    kept low enough for both: 100 requests a second."""
    from lorascope.serve.http.loadgen import LoadConfig, run_load

    app = make_app(setup, max_wait_ms=2, **settings)
    real = app.state.batcher.process

    def slow(jobs):  # 25 ms a row whatever the batch: at most 40 requests a second
        time.sleep(0.025 * sum(len(job.rows) for job in jobs))
        return real(jobs)

    app.state.batcher.process = slow
    with serving(app, timeout_s=20) as url:
        run_load(LoadConfig(url=url, clients=4, duration_s=0.5, adapters=["sst2"]))  # measures the cost per row
        return run_load(LoadConfig(url=url, clients=256, duration_s=3.0, rate_rps=100, adapters=["sst2"]))


@pytest.mark.slow
def test_under_overload_admitted_requests_keep_the_delay_bound(setup):
    bounded = _overloaded(setup, max_queue_delay_ms=500)
    assert bounded["rejected_429"] > 0 and bounded["server_errors_5xx"] == 0
    assert bounded["requests"] == bounded["ok"] + bounded["rejected_429"]
    # The bound is on the server's own estimate; the client also sees the HTTP path and the batch's jitter.
    assert bounded["latency_ms"]["p99"] < 1.5 * 500, bounded["latency_ms"]
    # The control: the count bound alone lets 128 requests queue, over 3 s of work.
    counted = _overloaded(setup, max_queue_delay_ms=None)
    assert counted["latency_ms"]["p99"] > 2 * bounded["latency_ms"]["p99"], (counted["latency_ms"], bounded["latency_ms"])


def test_access_log_is_opt_in(setup, caplog):
    caplog.set_level(logging.INFO, logger="lorascope.serve.http.access")
    with TestClient(make_app(setup)) as client:
        client.post("/v1/classify", json=GOOD)
    assert not [r for r in caplog.records if r.name == "lorascope.serve.http.access"]
    with TestClient(make_app(setup, access_log=True, token=TOKEN)) as client:
        client.post("/v1/classify", json=GOOD, headers=AUTH)
        client.get("/v1/adapters")
    lines = [r.getMessage() for r in caplog.records if r.name == "lorascope.serve.http.access"]
    assert len(lines) == 2
    assert '"POST /v1/classify HTTP/1.1" 200' in lines[0] and lines[0].endswith("ms")
    assert '"GET /v1/adapters HTTP/1.1" 401' in lines[1] and TOKEN not in "".join(lines)


def test_docs_are_served_behind_the_token(setup):
    with TestClient(make_app(setup, token=TOKEN)) as client:
        assert client.get("/docs").status_code == 401 and client.get("/openapi.json").status_code == 401
        assert client.get("/docs", headers=AUTH).status_code == 200
        paths = client.get("/openapi.json", headers=AUTH).json()["paths"]
        for path in ("/classify", "/v1/classify", "/score", "/v1/models", "/v1/load_lora_adapter", "/v1/unload_lora_adapter",
                     "/healthz", "/health", "/ready", "/metrics", "/v1/adapters"):
            assert path in paths, path
        assert "429" in paths["/v1/classify"]["post"]["responses"]


def test_settings_validate_operator_options():
    settings = ServerSettings(max_queue=4, log_level="info", access_log=True, graceful_shutdown_s=2.5, retry_after_s=2)
    assert settings.max_queue == 4 and settings.log_level == "info"
    for bad in ({"max_queue": 0}, {"log_level": "loud"}, {"graceful_shutdown_s": 0}, {"retry_after_s": 0}):
        with pytest.raises(ValueError):
            ServerSettings(**bad)


@pytest.mark.slow
def test_the_serve_command_opens_the_port_loads_then_drains_on_sigterm(tmp_path):
    import os
    import signal
    import subprocess

    from tests.test_cli import LORASCOPE

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*LORASCOPE, "serve", "--model", "tiny-llama", "--port", str(port), "--log-level", "info",
                             "--adapter-root", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(url + "/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, f"the server never became ready: {proc.poll()}"
        models = httpx.get(url + "/v1/models", timeout=5).json()
        assert models["object"] == "list" and models["data"][0]["owned_by"] == "lorascope"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_a_refused_closed_loop_client_waits_the_retry_after_it_was_given():
    """A client told 429 + Retry-After: 1 sends its next request a second later, not at once."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from lorascope.serve.http.loadgen import LoadConfig, run_load

    stub = FastAPI()

    @stub.get("/v1/adapters")
    def adapters() -> dict:
        return {"adapters": [{"name": "sst2", "task": "sst2", "input": "single"}]}

    @stub.post("/v1/classify")
    def classify() -> JSONResponse:
        return JSONResponse({"error": "queue_full"}, status_code=429, headers={"Retry-After": "1"})

    server = uvicorn.Server(uvicorn.Config(stub, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        result = run_load(LoadConfig(url=f"http://127.0.0.1:{port}", clients=2, duration_s=1.5, data_dir=None))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    # Each of the 2 clients: one request at 0 s and one after its 1 s wait; retrying at once would be hundreds.
    assert result["status_counts"] == {"429": 4}, result["status_counts"]


@pytest.mark.parametrize("status, header, wait", [(429, "1", 1.0), (503, "2", 2.0), (429, "600", 10.0), (429, None, 0.0),
                                                  (200, "1", 0.0), (429, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_is_read_from_refusals_only(status, header, wait):
    from lorascope.serve.http.loadgen import retry_after_s

    headers = {"Retry-After": header} if header is not None else {}
    assert retry_after_s(httpx.Response(status, headers=headers)) == wait
