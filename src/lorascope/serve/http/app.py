"""The HTTP API: classify with any loaded adapter, list / load / unload adapters, probes, metrics.

``create_app`` builds a FastAPI app around a :class:`~lorascope.serve.MultiAdapterRuntime` (or a
loader that builds one once the server is up); it opens no socket, so tests drive it in process
(``fastapi.testclient.TestClient`` or httpx's ASGI transport) and ``lorascope serve`` runs it with
:func:`lorascope.serve.http.run.serve`. Requests for different adapters that arrive together are
classified in one mixed batch by the micro-batcher (:mod:`lorascope.serve.http.batcher`).

The server's own endpoints:

* ``POST /v1/classify`` ``{adapter, inputs: [text | [text_a, text_b]]}`` -> ``{adapter, predictions}``
* ``GET /v1/adapters``; ``POST /v1/adapters`` ``{name, path}``; ``DELETE /v1/adapters/{name}``

The vLLM-compatible endpoints (:mod:`lorascope.serve.http.protocol`): ``POST /classify`` and
``POST /v1/classify`` with ``{model, input}``, ``POST /score`` and ``/v1/score``, ``GET /v1/models``,
``POST /v1/load_lora_adapter``, ``POST /v1/unload_lora_adapter``.

For operators: ``GET /healthz`` and ``GET /health`` (liveness), ``GET /ready`` (readiness: 200
once the model and start-up adapters are loaded, 503 before and while shutting down),
``GET /metrics`` (Prometheus text), ``GET /docs`` (the OpenAPI documentation).

Every path but the three probes needs the bearer token when one is configured. Whatever a client
sends gets a 2xx or a structured 4xx (see :mod:`lorascope.serve.http.inputs` for what an input must
be); a 5xx means a bug (500), or an overloaded, loading or stopping server (503 with
``Retry-After``), never a bad request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, NotRequired, TypedDict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http.adapter_meta import AdapterMeta
from lorascope.serve.http.encoder import TextEncoder
from lorascope.serve.http.errors import ApiError, LastResort, install_handlers
from lorascope.serve.http.gate import Gate
from lorascope.serve.http.observe import PROBE_PATHS, Observe
from lorascope.serve.http.protocol import (
    ClassificationResponse,
    ClassifyBody,
    OpenAIClassifyRequest,
    openai_classify,
)
from lorascope.serve.http.protocol import router as protocol_router
from lorascope.serve.http.schemas import (
    AdapterInfo,
    AdapterList,
    ClassifyResponse,
    ErrorResponse,
    LoadAdapterRequest,
    Prediction,
)
from lorascope.serve.http.service import Loaded, Service
from lorascope.serve.http.settings import ServerSettings
from lorascope.serve.sources import NAME_PATTERN

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 404, 409, 413, 422, 429, 503)}

_DESCRIPTION = """\
LoRA adapters of one base classifier, served unmerged; requests for different adapters share forward passes.

* **The server's own API**: `POST /v1/classify` `{adapter, inputs}`, `/v1/adapters` (list, load, unload).
* **vLLM-compatible API**: `POST /classify` and `/v1/classify` `{model, input}`, `POST /score` `{model, text_1, text_2}`,
  `GET /v1/models`, `POST /v1/load_lora_adapter`, `POST /v1/unload_lora_adapter`; errors in vLLM's shape
  `{"error": {"message", "type", "param", "code"}}`.
* **Operations**: `GET /healthz` and `/health` (alive), `GET /ready` (loaded and not shutting down), `GET /metrics`
  (Prometheus). A full queue answers 429, a missed deadline or a stopping server 503, both with `Retry-After`.

When the server has a token, every path except the probes, this page included, needs `Authorization: Bearer <token>`.
"""


class _Health(TypedDict):
    """The body of ``/healthz`` and ``/ready`` (``error`` only when loading failed)."""

    status: str
    adapters: int
    batches: int
    rows: int
    mixed_batches: int
    queue: int
    error: NotRequired[str]


def adapter_info(name: str, meta: AdapterMeta) -> AdapterInfo:
    """How the API describes a loaded adapter."""
    shape: Literal["single", "pair"] | None = None if meta.takes_pairs is None else ("pair" if meta.takes_pairs else "single")
    return AdapterInfo(name=name, labels=list(meta.labels), task=meta.task, input=shape)


def _valid_name(name: str) -> str:
    # fullmatch: the pattern's '$' also matches before a final newline, so match() would accept "sst2\n".
    if not NAME_PATTERN.fullmatch(name):
        raise ApiError(422, "invalid_adapter_name", "adapter names are 1 to 64 letters, digits, '_' or '-'")
    return name


def create_app(
    runtime: MultiAdapterRuntime | None,
    encoder: TextEncoder | None = None,
    settings: ServerSettings | None = None,
    meta: Mapping[str, AdapterMeta] | None = None,
    *,
    loader: Callable[[], Loaded] | None = None,
    base_name: str = "base",
) -> FastAPI:
    """Build the API around ``runtime``, or around what ``loader`` loads once the app starts.

    Args:
        runtime: The runtime with its start-up adapters; the app owns it from now on. None to load
            it later with ``loader`` (the server answers probes meanwhile; ``/ready`` says 503).
        encoder: Tokeniser of the runtime's base model (with ``runtime``).
        settings: Limits and security (defaults: :class:`ServerSettings`).
        meta: Label names and task per start-up adapter (else ``LABEL_<i>``; with ``runtime``).
        loader: Builds the runtime, encoder and metadata; run once on the model thread at start-up.
        base_name: The base model as given (its id in ``GET /v1/models`` unless
            ``settings.served_model_name`` names it).

    Returns:
        The FastAPI app; ``app.state.service`` holds the model side, and ``app.state.engine`` (None
        until loaded), ``app.state.batcher``, ``app.state.lifecycle`` and ``app.state.metrics`` its parts.
    """
    settings = settings or ServerSettings()
    if runtime is not None:
        if encoder is None:
            raise ValueError("an encoder is needed with the runtime")
        service = Service(settings, loaded=Loaded(runtime, encoder, meta), base_name=base_name)
    else:
        service = Service(settings, loader=loader, base_name=base_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await service.stop()

    app = FastAPI(title="lorascope", summary="LoRA adapters served unmerged, mixed in one batch", description=_DESCRIPTION,
                  lifespan=lifespan)
    app.state.service, app.state.settings = service, settings
    app.state.batcher, app.state.lifecycle, app.state.metrics = service.batcher, service.lifecycle, service.metrics
    app.state.engine = service.engine
    service.on_loaded = lambda: setattr(app.state, "engine", service.engine)
    install_handlers(app)
    app.add_middleware(Gate, token=settings.token, max_body_bytes=settings.max_body_bytes, open_paths=PROBE_PATHS)
    app.add_middleware(Observe, metrics=service.metrics, lifecycle=service.lifecycle, router=app.router,
                       retry_after_s=settings.retry_after_s, log_requests=settings.access_log)
    app.add_middleware(LastResort)  # added last, so it runs first and sees every exception

    def health_body() -> _Health:
        engine, batcher = service.engine, service.batcher
        return {"status": service.lifecycle.status, "adapters": len(engine.adapters) if engine else 0,
                "batches": batcher.batches, "rows": batcher.rows, "mixed_batches": engine.mixed_batches if engine else 0,
                "queue": batcher.waiting}

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        """Liveness, and how much batching has happened (open without the token).

        200 while loading, serving or shutting down; 503 only when the model failed to load.
        """
        return JSONResponse(health_body(), status_code=503 if service.lifecycle.state == "failed" else 200)

    @app.get("/health", tags=["operations"])
    async def health() -> Response:
        """Liveness as vLLM answers it: 200 with an empty body (503 when the model failed to load)."""
        return Response(status_code=503 if service.lifecycle.state == "failed" else 200)

    @app.get("/ready", tags=["operations"], responses={503: {"description": "loading, shutting down, or failed"}})
    async def ready() -> JSONResponse:
        """Readiness: 200 once the model and start-up adapters are loaded; 503 before, after a failed load, and while draining."""
        body = health_body()
        if service.lifecycle.ready:
            return JSONResponse(body)
        if service.lifecycle.error:
            body["error"] = service.lifecycle.error
        return JSONResponse(body, status_code=503, headers=service.retry_after)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics in the text exposition format."""
        content, media_type = service.metrics.render()
        return Response(content, media_type=media_type)

    @app.post("/v1/classify", response_model=ClassifyResponse | ClassificationResponse, responses=_ERRORS)
    async def classify(body: ClassifyBody, request: Request) -> ClassifyResponse | ClassificationResponse:
        """Classify texts or text pairs with one adapter: ``{adapter, inputs}``, or vLLM's ``{model, input}``.

        The vLLM-shaped request gets vLLM's answer, and its errors come in vLLM's error shape.
        """
        if isinstance(body, OpenAIClassifyRequest):
            return await openai_classify(service, body, request)
        name = _valid_name(body.adapter)
        meta = service.ready_engine().adapters.get(name)
        if meta is None:
            raise ApiError(404, "unknown_adapter", f"adapter '{name}' is not loaded")
        result = await service.classify(name, meta, body.inputs)
        predictions = [
            Prediction(label=result.labels[int(p.argmax())], label_id=int(p.argmax()),
                       probabilities={label: float(v) for label, v in zip(result.labels, p)})
            for p in result.probs
        ]
        return ClassifyResponse(adapter=name, predictions=predictions)

    @app.get("/v1/adapters", response_model=AdapterList, responses=_ERRORS)
    async def list_adapters() -> AdapterList:
        """The loaded adapters."""
        return AdapterList(adapters=[adapter_info(n, m) for n, m in service.ready_engine().adapters.items()])

    @app.post("/v1/adapters", status_code=201, response_model=AdapterInfo, responses={403: {"model": ErrorResponse}, **_ERRORS})
    async def load_adapter(request: LoadAdapterRequest) -> AdapterInfo:
        """Load an adapter folder from under an allowed root."""
        name = _valid_name(request.name)
        return adapter_info(name, await service.load(name, request.path))

    # dict[str, Any], not dict[str, str]: FastAPI documents the return annotation, and this keeps the OpenAPI schema as it was.
    @app.delete("/v1/adapters/{name}", responses=_ERRORS)
    async def unload_adapter(name: str) -> dict[str, Any]:
        """Unload an adapter; its queued requests get 404."""
        await service.unload(_valid_name(name))
        return {"removed": name}

    app.include_router(protocol_router(service))
    return app

