"""The HTTP API: classify with any loaded adapter, list / load / unload adapters, health.

``create_app`` builds a FastAPI app around a :class:`~lorascope.serve.MultiAdapterRuntime`; it opens no
socket, so tests drive it in process (``fastapi.testclient.TestClient`` or httpx's ASGI transport)
and ``lorascope serve`` hands it to uvicorn. Requests for different adapters that arrive together
are classified in one mixed batch by the micro-batcher (:mod:`lorascope.serve.http.batcher`).

Endpoints (all ``/v1`` ones need the bearer token when one is configured):

* ``POST /v1/classify`` ``{adapter, inputs: [text | [text_a, text_b]]}`` -> ``{adapter, predictions}``
* ``GET /v1/adapters``; ``POST /v1/adapters`` ``{name, path}``; ``DELETE /v1/adapters/{name}``
* ``GET /healthz``

Whatever a client sends gets a 2xx or a structured 4xx (see :mod:`lorascope.serve.http.inputs` for
what an input must be); a 5xx means a bug or an overloaded server, never a bad request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from lorascope.errors import LorascopeError
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http.adapter_meta import AdapterMeta
from lorascope.serve.http.batcher import MicroBatcher
from lorascope.serve.http.encoder import TextEncoder, UnusableInput
from lorascope.serve.http.engine import AdapterGone, ClassifyJob, EmptyRow, Engine
from lorascope.serve.http.errors import ApiError, LastResort, install_handlers
from lorascope.serve.http.gate import Gate
from lorascope.serve.http.inputs import check_inputs
from lorascope.serve.http.schemas import (
    AdapterInfo,
    AdapterList,
    ClassifyRequest,
    ClassifyResponse,
    ErrorResponse,
    LoadAdapterRequest,
    Prediction,
)
from lorascope.serve.http.security import resolve_under_roots
from lorascope.serve.http.settings import ServerSettings
from lorascope.serve.sources import NAME_PATTERN, resolve_adapter

_ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 409, 413, 422, 503)}


def adapter_info(name: str, meta: AdapterMeta) -> AdapterInfo:
    """How the API describes a loaded adapter."""
    shape = None if meta.takes_pairs is None else ("pair" if meta.takes_pairs else "single")
    return AdapterInfo(name=name, labels=list(meta.labels), task=meta.task, input=shape)


def _valid_name(name: str) -> str:
    # fullmatch: the pattern's '$' also matches before a final newline, so match() would accept "sst2\n".
    if not NAME_PATTERN.fullmatch(name):
        raise ApiError(422, "invalid_adapter_name", "adapter names are 1 to 64 letters, digits, '_' or '-'")
    return name


def create_app(
    runtime: MultiAdapterRuntime,
    encoder: TextEncoder,
    settings: ServerSettings | None = None,
    meta: Mapping[str, AdapterMeta] | None = None,
) -> FastAPI:
    """Build the API around ``runtime``.

    Args:
        runtime: The runtime with its start-up adapters; the app owns it from now on.
        encoder: Tokeniser of the runtime's base model.
        settings: Limits and security (defaults: :class:`ServerSettings`).
        meta: Label names and task per start-up adapter (else ``LABEL_<i>``).

    Returns:
        The FastAPI app; ``app.state.engine`` and ``app.state.batcher`` expose its internals.
    """
    settings = settings or ServerSettings()
    engine = Engine(runtime, encoder, meta)
    batcher = MicroBatcher(engine.classify, settings.max_batch_rows, settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="lorascope", summary="LoRA adapters served unmerged, mixed in one batch", lifespan=lifespan)
    app.state.engine, app.state.batcher, app.state.settings = engine, batcher, settings
    install_handlers(app)
    app.add_middleware(Gate, token=settings.token, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(LastResort)  # added last, so it runs first and sees every exception

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness, and how much batching has happened (open without the token)."""
        return {"status": "ok", "adapters": len(engine.adapters), "batches": batcher.batches, "rows": batcher.rows,
                "mixed_batches": engine.mixed_batches}

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=_ERRORS)
    async def classify(request: ClassifyRequest) -> ClassifyResponse:
        """Classify texts or text pairs with one adapter."""
        name = _valid_name(request.adapter)
        meta = engine.adapters.get(name)
        if meta is None:
            raise ApiError(404, "unknown_adapter", f"adapter '{name}' is not loaded")
        check_inputs(request.inputs, settings, name, meta)
        try:
            rows = await asyncio.to_thread(encoder.encode, request.inputs)  # tokenising off the event loop
        except UnusableInput as err:
            raise ApiError(422, err.code, str(err)) from None
        try:
            probs = await asyncio.wait_for(batcher.submit(ClassifyJob(name, rows), len(rows)), settings.request_timeout_s)
        except AdapterGone:
            raise ApiError(404, "unknown_adapter", f"adapter '{name}' was unloaded") from None
        except EmptyRow as err:
            raise ApiError(422, "empty_input", str(err)) from None
        except TimeoutError:
            raise ApiError(503, "timeout", f"not served within {settings.request_timeout_s:g} s; the server is overloaded") from None
        except LorascopeError as err:
            raise ApiError(422, "invalid_input", str(err)) from None
        labels = engine.adapters.get(name, AdapterMeta(tuple(f"LABEL_{i}" for i in range(probs.shape[1])))).labels
        predictions = [
            Prediction(label=labels[int(p.argmax())], label_id=int(p.argmax()),
                       probabilities={label: float(v) for label, v in zip(labels, p)})
            for p in probs
        ]
        return ClassifyResponse(adapter=name, predictions=predictions)

    @app.get("/v1/adapters", response_model=AdapterList, responses=_ERRORS)
    async def list_adapters() -> AdapterList:
        """The loaded adapters."""
        return AdapterList(adapters=[adapter_info(n, m) for n, m in engine.adapters.items()])

    @app.post("/v1/adapters", status_code=201, response_model=AdapterInfo, responses={403: {"model": ErrorResponse}, **_ERRORS})
    async def load_adapter(request: LoadAdapterRequest) -> AdapterInfo:
        """Load an adapter folder from under an allowed root."""
        name = _valid_name(request.name)
        if name in engine.adapters:
            raise ApiError(409, "adapter_exists", f"adapter '{name}' is already loaded; DELETE it first")
        if len(engine.adapters) >= settings.max_adapters:
            raise ApiError(409, "too_many_adapters", f"{settings.max_adapters} adapters are loaded, the most allowed")
        folder = resolve_under_roots(request.path, settings.adapter_roots)
        try:
            source = await asyncio.to_thread(resolve_adapter, name, folder)
            added = await batcher.exclusive(engine.add, name, source.folder, AdapterMeta.of(source))
        except LorascopeError as err:
            if name in engine.adapters:  # a concurrent request loaded the same name first
                raise ApiError(409, "adapter_exists", f"adapter '{name}' is already loaded") from None
            raise ApiError(422, "invalid_adapter", str(err).replace(str(folder), request.path)) from None
        return adapter_info(name, added)

    @app.delete("/v1/adapters/{name}", responses=_ERRORS)
    async def unload_adapter(name: str) -> dict:
        """Unload an adapter; its queued requests get 404."""
        _valid_name(name)
        if name not in engine.adapters:
            raise ApiError(404, "unknown_adapter", f"adapter '{name}' is not loaded")
        try:
            await batcher.exclusive(engine.remove, name)
        except LorascopeError:  # removed concurrently
            raise ApiError(404, "unknown_adapter", f"adapter '{name}' is not loaded") from None
        return {"removed": name}

    return app
