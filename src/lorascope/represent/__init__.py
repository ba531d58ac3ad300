"""Layer-wise pooled representations: extraction, pooling, storage."""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "Encoder": ".encode",
    "Representations": ".extract",
    "extract": ".extract",
    "RepresentConfig": ".config",
    "run_represent": ".run",
    "load_representations": ".store",
    "save_representations": ".store",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
