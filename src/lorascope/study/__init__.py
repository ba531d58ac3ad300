"""Studies: the whole protocol — sanity, baselines, training grid, drift, serving, report — in one resumable run."""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "StudyConfig": ".config",
    "load_study": ".config",
    "run_study": ".runner",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
