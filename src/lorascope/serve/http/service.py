"""What both APIs do, once: classify with a loaded adapter, load and unload adapters, load the model.

The server's own routes (:mod:`lorascope.serve.http.app`) and the vLLM-compatible ones
(:mod:`lorascope.serve.http.protocol`) differ only in the shapes of their bodies; the checks, the
limits, the queue and the root-folder rules live here, so the two can never disagree.

A classify request goes: inputs checked (413 / 422) -> a place in the bounded queue (429 when
full) -> tokenised off the event loop -> micro-batched -> answered, all within
``request_timeout_s`` of taking its place (else 503). 429 and 503 carry ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lorascope.errors import LorascopeError
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http.adapter_meta import AdapterMeta
from lorascope.serve.http.batcher import MicroBatcher, QueueFull
from lorascope.serve.http.encoder import TextEncoder, UnusableInput
from lorascope.serve.http.engine import AdapterGone, ClassifyJob, EmptyRow, Engine
from lorascope.serve.http.errors import ApiError
from lorascope.serve.http.inputs import check_inputs
from lorascope.serve.http.lifecycle import Lifecycle
from lorascope.serve.http.observe import Metrics
from lorascope.serve.http.security import resolve_under_roots
from lorascope.serve.http.settings import ServerSettings
from lorascope.serve.sources import resolve_adapter

log = logging.getLogger("lorascope.serve.http")


@dataclass
class Loaded:
    """A model ready to serve: the runtime with its start-up adapters, its tokeniser, and their label names."""

    runtime: MultiAdapterRuntime
    encoder: TextEncoder
    meta: Mapping[str, AdapterMeta] | None = None


@dataclass(frozen=True)
class Classified:
    """A classify request's answer: probabilities [rows, n_labels], label names, tokens read."""

    probs: npt.NDArray[np.float32]
    labels: tuple[str, ...]
    tokens: int


class Service:
    """The model behind the API, its queue, its state and its metrics.

    Args:
        settings: Limits and security.
        loaded: The model, when it is already in memory; else ``loader`` brings it (see :meth:`start`).
        loader: Called once on the model thread at start-up when ``loaded`` is None.
        base_name: The base model as given (``root`` of its model card).
    """

    def __init__(self, settings: ServerSettings, loaded: Loaded | None = None,
                 loader: Callable[[], Loaded] | None = None, base_name: str = "base") -> None:
        if (loaded is None) == (loader is None):
            raise ValueError("give exactly one of loaded and loader")
        self.settings = settings
        self.base_root = base_name
        self.base_id = settings.served_model_name or base_name
        self.lifecycle = Lifecycle(loaded=loaded is not None)
        self.engine: Engine | None = None
        self._loader = loader
        self._load_task: asyncio.Task[None] | None = None
        self.on_loaded: Callable[[], None] | None = None
        self.on_load_failure: Callable[[], None] | None = None
        self.metrics = Metrics(self.lifecycle, lambda: self.batcher.waiting,
                               lambda: len(self.engine.adapters) if self.engine else 0,
                               lambda: self.engine.mixed_batches if self.engine else 0, settings.max_queue)
        self.batcher: MicroBatcher[ClassifyJob, npt.NDArray[np.float32]] = MicroBatcher(
            self._process, settings.max_batch_rows, settings.max_wait_ms, settings.max_queue,
            on_batch=self.metrics.observe_batch, max_delay_ms=settings.max_queue_delay_ms)
        self.retry_after = {"Retry-After": str(settings.retry_after_s)}
        if loaded is not None:
            self.engine = Engine(loaded.runtime, loaded.encoder, loaded.meta)

    def _process(self, jobs: list[ClassifyJob]) -> list[npt.NDArray[np.float32] | BaseException]:
        assert self.engine is not None  # only admitted requests reach here, and admission needs the engine
        return list(self.engine.classify(jobs))  # a copy typed for the batcher (list is invariant in its items)

    # ---------------------------------------------------------------------------------------------
    # Start-up and shutdown (the app's lifespan).

    def start(self) -> None:
        """Start the batcher, and loading the model when it was deferred (the port is open meanwhile)."""
        self.batcher.start()
        if self._loader is not None and self.engine is None and self._load_task is None:
            self._load_task = asyncio.get_running_loop().create_task(self._load(), name="lorascope-load")

    async def _load(self) -> None:
        try:
            # On the model thread, like every other use of the runtime.
            assert self._loader is not None  # start() loads only when a loader was given
            loaded: Loaded = await self.batcher.exclusive(self._loader)
            self.engine = Engine(loaded.runtime, loaded.encoder, loaded.meta)
        except Exception as err:  # any failure: the server cannot serve, and must say so rather than hang
            log.error("loading the model failed: %s: %s", type(err).__name__, err)
            self.lifecycle.fail(f"{type(err).__name__}: {err}")
            if self.on_load_failure is not None:
                self.on_load_failure()
            return
        self.lifecycle.loaded()
        if self.on_loaded is not None:
            self.on_loaded()
        log.info("ready: %d adapter(s) loaded", len(self.engine.adapters))

    async def stop(self) -> None:
        """Stop the batcher (requests still queued get cancelled) and any load under way."""
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        await self.batcher.stop()

    # ---------------------------------------------------------------------------------------------
    # Requests.

    def ready_engine(self) -> Engine:
        """The engine, or 503 (with ``Retry-After``) while the model loads or when loading failed."""
        if self.engine is not None:
            return self.engine
        self.metrics.rejected.labels("loading").inc()
        if self.lifecycle.state == "failed":
            raise ApiError(503, "load_failed", "the model failed to load; see the server log")
        raise ApiError(503, "loading", "the model is still loading: retry shortly", self.retry_after)

    async def classify(self, name: str, meta: AdapterMeta, inputs: list[str | list[str]], field: str = "inputs") -> Classified:
        """Classify ``inputs`` with the loaded adapter ``name`` (whose metadata is ``meta``).

        Raises:
            ApiError: 413 / 422 for unusable inputs, 404 if the adapter was unloaded meanwhile,
                429 when the queue is full, 503 past the deadline.
        """
        engine = self.ready_engine()
        check_inputs(inputs, self.settings, name, meta, field)
        try:
            ticket = self.batcher.admit(len(inputs))
        except QueueFull as err:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, "queue_full", f"{err}: retry after {self.settings.retry_after_s} s",
                           self.retry_after) from None
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                try:
                    rows = await asyncio.to_thread(engine.encoder.encode, inputs, field)  # off the event loop
                except UnusableInput as err:
                    raise ApiError(422, err.code, str(err)) from None
                probs = await self.batcher.submit(ClassifyJob(name, rows), len(rows), ticket)
        except TimeoutError:
            self.metrics.rejected.labels("deadline").inc()
            # Not the client's fault and not a broken server: overloaded, so "retry later".
            raise ApiError(503, "timeout", f"not served within {self.settings.request_timeout_s:g} s; the server is "
                                           "overloaded", self.retry_after) from None
        except AdapterGone:
            raise ApiError(404, "unknown_adapter", f"adapter '{name}' was unloaded") from None
        except EmptyRow as err:
            raise ApiError(422, "empty_input", str(err)) from None
        except LorascopeError as err:
            raise ApiError(422, "invalid_input", str(err)) from None
        finally:
            ticket.release()
        labels = engine.adapters.get(name, meta).labels
        if len(labels) != probs.shape[1]:
            labels = tuple(f"LABEL_{i}" for i in range(probs.shape[1]))
        return Classified(probs, labels, sum(len(r["input_ids"]) for r in rows))

    async def load(self, name: str, path: str) -> AdapterMeta:
        """Load the adapter folder ``path`` (under an allowed root) as ``name``.

        Raises:
            ApiError: 409 when the name is taken or too many adapters are loaded, 403 / 404 / 422
                for the folder (see :func:`~lorascope.serve.http.security.resolve_under_roots`).
        """
        engine = self.ready_engine()
        if name in engine.adapters:
            raise ApiError(409, "adapter_exists", f"adapter '{name}' is already loaded; unload it first")
        if name == self.base_id:
            raise ApiError(409, "name_taken", f"'{name}' is the base model's name")
        if len(engine.adapters) >= self.settings.max_adapters:
            raise ApiError(409, "too_many_adapters", f"{self.settings.max_adapters} adapters are loaded, the most allowed")
        folder = resolve_under_roots(path, self.settings.adapter_roots)
        try:
            source = await asyncio.to_thread(resolve_adapter, name, folder)
            added: AdapterMeta = await self.batcher.exclusive(engine.add, name, source.folder, AdapterMeta.of(source, path))
            return added
        except LorascopeError as err:
            if name in engine.adapters:  # a concurrent request loaded the same name first
                raise ApiError(409, "adapter_exists", f"adapter '{name}' is already loaded") from None
            raise ApiError(422, "invalid_adapter", str(err).replace(str(folder), path)) from None

    async def unload(self, name: str) -> None:
        """Unload ``name``; its queued requests get 404.

        Raises:
            ApiError: 404 when no adapter of that name is loaded.
        """
        engine = self.ready_engine()
        if name not in engine.adapters:
            raise ApiError(404, "unknown_adapter", f"adapter '{name}' is not loaded")
        try:
            await self.batcher.exclusive(engine.remove, name)
        except LorascopeError:  # removed concurrently
            raise ApiError(404, "unknown_adapter", f"adapter '{name}' is not loaded") from None
