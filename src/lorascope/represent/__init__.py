"""Layer-wise pooled representations: extraction, pooling, storage."""

from lorascope.represent.extract import Representations, extract
from lorascope.represent.run import RepresentConfig, run_represent
from lorascope.represent.store import load_representations, save_representations

__all__ = ["RepresentConfig", "Representations", "extract", "load_representations", "run_represent", "save_representations"]
