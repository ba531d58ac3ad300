"""Hyperparameter search (docs/protocol.md §2): Optuna TPE over a per-method space, resumable, multi-worker."""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "HpoConfig": ".config",
    "run_hpo": ".search",
    "HpoRecord": ".record",
    "DEFAULT_SPACES": ".space",
    "Choice": ".space",
    "Fixed": ".space",
    "FloatRange": ".space",
    "SearchSpace": ".space",
    "resolve_space": ".space",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
