"""Representation drift of fine-tuned models from their base: controls, per-layer CKA, statistics."""

from lorascope.drift.run import DriftConfig, run_drift

__all__ = ["DriftConfig", "run_drift"]
