"""Lenses on "how far did fine-tuning move the model" besides representation drift.

Public API:
    WeightLensConfig, run_weight_lens: the weight lens over the training runs of one task
        (relative update, effective rank and intruder dimensions of every adapted matrix).
    ForgettingConfig, run_forgetting: the function lens for decoders (next-token loss of held-out
        text under the base's LM head, base vs each run).
    ProbeConfig, run_probe_retention: the function lens for any model (linear-probe accuracy on
        other tasks, base vs each run).
    WeightsRecord, ForgettingRecord, ProbesRecord: what those three write and return
        (``weights.json``, ``forgetting.json``, ``probes.json``), read back with ``Record.read(path)``.
"""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "WeightLensConfig": ".config",
    "run_weight_lens": ".weights",
    "ForgettingConfig": ".config",
    "run_forgetting": ".forgetting",
    "ProbeConfig": ".config",
    "run_probe_retention": ".probes",
    "WeightsRecord": ".records",
    "ForgettingRecord": ".records",
    "ProbesRecord": ".records",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
