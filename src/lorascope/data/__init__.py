"""Tasks, readers and tokenisation: from files (or the Hub) to padded batches with stable ids."""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "load_split": ".load",
    "resolve_glue_dir": ".load",
    "subsample": ".load",
    "with_label_set": ".load",
    "GLUE_TASKS": ".tasks",
    "TaskSpec": ".tasks",
    "get_task": ".tasks",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
