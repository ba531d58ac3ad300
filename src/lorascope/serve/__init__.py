"""Serve LoRA adapters unmerged and swappable on one base classifier, without PEFT's overhead.

Public API:
    MultiAdapterRuntime: the runtime (merged single-adapter path, per-request switching, and
        mixed-adapter batches via a batched gather-matmul).
    LoraAdapter, load_adapter: a PEFT adapter folder as plain tensors, checked against a base.

Subpackage :mod:`lorascope.serve.http` puts the runtime behind HTTP (``lorascope serve``) and
holds the load generator that measures it (``lorascope loadtest``).
"""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "LoraAdapter": ".adapter",
    "LoraModule": ".adapter",
    "load_adapter": ".adapter",
    "MODES": ".runtime",
    "MultiAdapterRuntime": ".runtime",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
