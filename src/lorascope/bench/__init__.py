"""Serving-cost benchmark (RQ2): every way of serving LoRA adapters, timed on the same requests.

Public API:
    BenchConfig, run_bench: the in-process benchmark (bench.json, bench.csv).
    STRATEGIES: the strategy names it knows.
    LoadConfig, run_load: the HTTP load generator against a running ``lorascope serve``.
"""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "STRATEGIES": ".config",
    "BenchConfig": ".config",
    "run_bench": ".run",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
