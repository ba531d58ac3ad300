"""Serving-cost benchmark (RQ2): every way of serving LoRA adapters, timed on the same requests.

Public API:
    BenchConfig, run_bench: the in-process benchmark (bench.json, bench.csv).
    STRATEGIES: the strategy names it knows.
    LoadConfig, run_load: the HTTP load generator against a running ``lorascope serve``.
"""

from lorascope.bench.config import STRATEGIES, BenchConfig
from lorascope.bench.load import LoadConfig, run_load
from lorascope.bench.run import run_bench

__all__ = ["STRATEGIES", "BenchConfig", "LoadConfig", "run_bench", "run_load"]
