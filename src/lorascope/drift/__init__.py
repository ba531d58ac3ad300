"""Representation drift of fine-tuned models from their base: controls, per-layer CKA, statistics."""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "DriftConfig": ".config",
    "run_drift": ".run",
    "DriftRecord": ".record",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
