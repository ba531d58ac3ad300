"""HTTP serving of many LoRA adapters on one base model, with mixed-adapter micro-batching.

Public API:
    create_app: FastAPI app around a MultiAdapterRuntime (no socket; tests use it in process).
    build_app: the same, built from a base model name and adapter folders (``lorascope serve``).
    serve: run an app on uvicorn with the settings' log level and access log, draining on SIGTERM.
    make_server: the uvicorn server ``serve`` runs (to run it in a thread, or drain it by hand).
    ServerSettings: limits (rows, characters, batch size, wait, queue, deadline), bearer token,
        allowed adapter roots, logging, shutdown.
    TextEncoder: tokenisation of texts and pairs for the base model.
    AdapterMeta: label names and task of a served adapter.
"""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "create_app": ".app",
    "build_app": ".build",
    "TextEncoder": ".encoder",
    "AdapterMeta": ".adapter_meta",
    "ServerSettings": ".settings",
    "serve": ".run",
    "make_server": ".run",
    "LoadConfig": ".loadgen",
    "run_load": ".loadgen",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
