"""Serving-cost benchmark (RQ2): every way of serving LoRA adapters, timed on the same requests.

Public API:
    BenchConfig, run_bench: the in-process benchmark (bench.json, bench.csv); with ``endpoint`` set, a
        running HTTP server (lorascope serve, vLLM) timed beside it (see ``lorascope.bench.endpoint``).
    BenchRecord: what run_bench writes as bench.json and returns.
    STRATEGIES: the strategy names it knows.
    LoadConfig, run_load: the HTTP load generator against a running ``lorascope serve``.
"""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "STRATEGIES": ".config",
    "BenchConfig": ".config",
    "run_bench": ".run",
    "BenchRecord": ".record",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
