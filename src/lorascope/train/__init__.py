"""One training path for LoRA and full fine-tuning on the Hugging Face Trainer."""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "TrainConfig": ".config",
    "prepare_run": ".run",
    "run_train": ".run",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
