"""Base models by alias, folder or Hub id, and the two ways of making them trainable."""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "ParamCounts": ".adapt",
    "count_parameters": ".adapt",
    "prepare_for_method": ".adapt",
    "LoadedModel": ".load",
    "load_classifier": ".load",
    "load_run": ".load",
    "ALIASES": ".registry",
    "resolve_model": ".registry",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
