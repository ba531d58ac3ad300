"""The HTTP server: answers, mixed-adapter batching, structured errors, run-time adapters, a real socket.

Three synthetic adapters on the 2-layer random ``tiny-llama``; answers are compared with direct
calls of a separate runtime on the same base, adapter by adapter.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from lorascope.bench.synthetic import make_synthetic_adapters
from lorascope.models.base_recipe import open_base
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http import AdapterMeta, ServerSettings, TextEncoder, build_app, create_app
from lorascope.serve.http.loadgen import LoadConfig, run_load

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SINGLES = ["a gripping, beautifully acted film", "dull"]
PAIRS = [["The firm said profits rose.", "Profits went up."], ["a", "b"]]
# What each synthetic adapter's task takes: sst2 single texts, mrpc and rte pairs.
INPUTS = {"sst2": SINGLES, "mrpc": PAIRS, "rte": PAIRS}


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Adapters under an allowed root, the base recipe, and a reference runtime for expected answers."""
    root = tmp_path_factory.mktemp("adapters")
    spec = open_base("tiny-llama", ("negative", "positive"), seed=0)
    sources = make_synthetic_adapters(spec, ["sst2", "mrpc", "rte"], 3, root, r=4, alpha=8, targets=None, seed=1)
    reference = MultiAdapterRuntime.from_folders(spec.load("fp32", "cpu"), {s.name: s.folder for s in sources})
    return root, spec, sources, reference


def make_app(setup, **settings):
    root, spec, sources, _ = setup
    runtime = MultiAdapterRuntime.from_folders(spec.load("fp32", "cpu"), {s.name: s.folder for s in sources})
    meta = {s.name: AdapterMeta(s.label_names, s.task) for s in sources}
    encoder = TextEncoder(spec.tokenizer, spec.is_decoder, max_length=64)
    return create_app(runtime, encoder, ServerSettings(**settings), meta)


def expected_probs(setup, adapter: str, inputs) -> np.ndarray:
    """Probabilities of the reference runtime, one adapter for the whole batch, [rows, n_labels]."""
    _, spec, _, reference = setup
    encoder = TextEncoder(spec.tokenizer, spec.is_decoder, max_length=64)
    batch = encoder.pad(encoder.encode(inputs))
    logits = reference.predict_logits(batch.pop("input_ids"), batch.pop("attention_mask"), adapter, mode="merged", **batch)
    return torch.softmax(logits.float(), -1).numpy()


def probs_of(body: dict) -> np.ndarray:
    return np.array([list(p["probabilities"].values()) for p in body["predictions"]])


def test_classify_single_texts_and_pairs(setup):
    with TestClient(make_app(setup)) as client:
        response = client.post("/v1/classify", json={"adapter": "mrpc", "inputs": PAIRS})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["adapter"] == "mrpc" and len(body["predictions"]) == len(PAIRS)
        first = body["predictions"][0]
        assert set(first["probabilities"]) == {"not_equivalent", "equivalent"}
        assert first["label"] == ["not_equivalent", "equivalent"][first["label_id"]]
        np.testing.assert_allclose(probs_of(body), expected_probs(setup, "mrpc", PAIRS), atol=1e-5)
        singles = client.post("/v1/classify", json={"adapter": "sst2", "inputs": SINGLES})
        assert singles.status_code == 200, singles.text
        np.testing.assert_allclose(probs_of(singles.json()), expected_probs(setup, "sst2", SINGLES), atol=1e-5)
        listed = client.get("/v1/adapters").json()["adapters"]
        assert [a["name"] for a in listed] == ["sst2", "mrpc", "rte"] and listed[2]["task"] == "rte"


def test_concurrent_requests_for_different_adapters_are_batched_together_and_answered_right(setup):
    app = make_app(setup, max_wait_ms=200.0)  # a long window, so the concurrent requests share batches
    names = ["sst2", "mrpc", "rte"] * 4
    inputs = [[INPUTS[n][i % 2], INPUTS[n][(i + 1) % 2]] for i, n in enumerate(names)]

    async def fire():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await asyncio.gather(
                    *(client.post("/v1/classify", json={"adapter": n, "inputs": x}) for n, x in zip(names, inputs))
                )

    responses = asyncio.run(fire())
    for name, x, response in zip(names, inputs, responses):
        assert response.status_code == 200, response.text
        # Mixed (BGMV) batches against the single-adapter merged path: the runtime's 1e-4 bound, as probabilities.
        np.testing.assert_allclose(probs_of(response.json()), expected_probs(setup, name, x), atol=1e-4)
    assert app.state.engine.mixed_batches >= 1
    assert app.state.batcher.batches < len(names)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]


@pytest.mark.parametrize(
    "request_kwargs,status,code",
    [
        (dict(json={"adapter": "nope", "inputs": ["x"]}), 404, "unknown_adapter"),
        (dict(json={"adapter": "../etc", "inputs": ["x"]}), 422, "invalid_adapter_name"),
        (dict(content=b'{"adapter": "sst2", "inputs": [', headers={"content-type": "application/json"}), 422, "invalid_request"),
        (dict(json={"adapter": "sst2"}), 422, "invalid_request"),
        (dict(json={"adapter": "sst2", "inputs": []}), 422, "invalid_request"),
        (dict(json={"adapter": "sst2", "inputs": [3]}), 422, "invalid_request"),
        (dict(json={"adapter": "sst2", "inputs": ["x"], "extra": 1}), 422, "invalid_request"),
        (dict(json={"adapter": "sst2", "inputs": [["a", "b", "c"]]}), 422, "invalid_input"),
        (dict(json={"adapter": "sst2", "inputs": ["x"] * 5}), 413, "too_many_inputs"),
        (dict(json={"adapter": "sst2", "inputs": ["x" * 101]}), 413, "input_too_long"),
        (dict(json={"adapter": "mrpc", "inputs": [["ok", "y" * 101]]}), 413, "input_too_long"),
        (dict(content=b"[" + b'"x",' * 30000 + b'"x"]', headers={"content-type": "application/json"}), 413, "body_too_large"),
    ],
)
def test_bad_requests_get_structured_errors_and_the_server_keeps_serving(setup, request_kwargs, status, code):
    with TestClient(make_app(setup, max_batch_size=4, max_input_chars=100)) as client:
        assert_error(client.post("/v1/classify", **request_kwargs), status, code)
        assert client.post("/v1/classify", json={"adapter": "sst2", "inputs": ["fine"]}).status_code == 200


def test_unknown_paths_and_methods_are_structured_too(setup):
    with TestClient(make_app(setup)) as client:
        assert_error(client.get("/v2/whatever"), 404, "not_found")
        assert_error(client.put("/v1/classify", json={}), 405, "method_not_allowed")


def test_token_is_required_on_v1_when_set(setup):
    with TestClient(make_app(setup, token=TOKEN)) as client:
        good = {"adapter": "sst2", "inputs": ["x"]}
        assert_error(client.post("/v1/classify", json=good), 401, "unauthorized")
        assert_error(client.post("/v1/classify", json=good, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert_error(client.post("/v1/classify", json=good, headers={"Authorization": TOKEN}), 401, "unauthorized")
        # The token is checked before the body is even parsed.
        assert_error(client.post("/v1/classify", content=b"{", headers={"content-type": "application/json"}), 401, "unauthorized")
        assert_error(client.get("/v1/adapters"), 401, "unauthorized")
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/classify", json=good, headers=AUTH).status_code == 200


def test_adapters_load_and_unload_at_run_time_only_under_allowed_roots(setup, tmp_path):
    root, *_ = setup
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "empty").mkdir()
    with TestClient(make_app(setup, adapter_roots=[str(root)])) as client:
        loaded = client.post("/v1/adapters", json={"name": "sst2_b", "path": "sst2"})
        assert loaded.status_code == 201, loaded.text
        assert loaded.json()["labels"] == ["negative", "positive"]
        answer = client.post("/v1/classify", json={"adapter": "sst2_b", "inputs": SINGLES})
        np.testing.assert_allclose(probs_of(answer.json()), expected_probs(setup, "sst2", SINGLES), atol=1e-5)
        by_absolute = client.post("/v1/adapters", json={"name": "rte_b", "path": str(root / "rte")})
        assert by_absolute.status_code == 201, by_absolute.text
        assert_error(client.post("/v1/adapters", json={"name": "sst2_b", "path": "sst2"}), 409, "adapter_exists")
        assert_error(client.post("/v1/adapters", json={"name": "x", "path": "../outside"}), 403, "path_not_allowed")
        assert_error(client.post("/v1/adapters", json={"name": "x", "path": "escape"}), 403, "path_not_allowed")
        assert_error(client.post("/v1/adapters", json={"name": "x", "path": "/etc"}), 403, "path_not_allowed")
        assert_error(client.post("/v1/adapters", json={"name": "x", "path": "missing"}), 404, "adapter_folder_not_found")
        assert_error(client.post("/v1/adapters", json={"name": "x", "path": "empty"}), 422, "invalid_adapter")
        assert_error(client.post("/v1/adapters", json={"name": "a/b", "path": "sst2"}), 422, "invalid_adapter_name")
        assert client.delete("/v1/adapters/sst2_b").json() == {"removed": "sst2_b"}
        assert_error(client.post("/v1/classify", json={"adapter": "sst2_b", "inputs": ["x"]}), 404, "unknown_adapter")
        assert_error(client.delete("/v1/adapters/sst2_b"), 404, "unknown_adapter")
        assert [a["name"] for a in client.get("/v1/adapters").json()["adapters"]] == ["sst2", "mrpc", "rte", "rte_b"]
        assert client.post("/v1/classify", json={"adapter": "mrpc", "inputs": [["still", "fine"]]}).status_code == 200


def test_loading_is_disabled_without_roots(setup):
    with TestClient(make_app(setup)) as client:
        assert_error(client.post("/v1/adapters", json={"name": "x", "path": "sst2"}), 403, "adapter_loading_disabled")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_server_under_the_load_generator(setup):
    root, *_ = setup
    app = build_app("tiny-llama", {n: str(root / n) for n in ("sst2", "mrpc", "rte")}, ServerSettings(token=TOKEN), device="cpu")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        result = run_load(LoadConfig(url=f"http://127.0.0.1:{port}", clients=4, duration_s=3, max_requests=100_000,
                                     rows=2, token=TOKEN))
        assert result["errors"] == 0, result["status_counts"]
        assert result["ok"] > 10 and result["stopped_by"] == "duration"
        assert set(result["ok_per_adapter"]) == {"sst2", "mrpc", "rte"}
        assert 2.5 < result["duration_s"] < 10
        capped = run_load(LoadConfig(url=f"http://127.0.0.1:{port}", clients=3, duration_s=30, max_requests=7, token=TOKEN))
        assert capped["requests"] == 7 and capped["stopped_by"] == "max_requests"
        assert app.state.engine.mixed_batches >= 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)
