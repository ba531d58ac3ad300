"""HTTP serving of many LoRA adapters on one base model, with mixed-adapter micro-batching.

Public API:
    create_app: FastAPI app around a MultiAdapterRuntime (no socket; tests use it in process).
    build_app: the same, built from a base model name and adapter folders (``lorascope serve``).
    ServerSettings: limits (rows, characters, batch size, wait), bearer token, allowed adapter roots.
    TextEncoder: tokenisation of texts and pairs for the base model.
    AdapterMeta: label names and task of a served adapter.
"""

from lorascope.server.app import create_app
from lorascope.server.build import build_app
from lorascope.server.encoder import TextEncoder
from lorascope.server.engine import AdapterMeta
from lorascope.server.settings import ServerSettings

__all__ = ["AdapterMeta", "ServerSettings", "TextEncoder", "build_app", "create_app"]
