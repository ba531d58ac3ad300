"""Base models by alias, folder or Hub id, and the two ways of making them trainable."""

from lorascope.models.adapt import ParamCounts, count_parameters, prepare_for_method
from lorascope.models.load import LoadedModel, load_classifier, load_run
from lorascope.models.registry import ALIASES, resolve_model

__all__ = ["ALIASES", "LoadedModel", "ParamCounts", "count_parameters", "load_classifier", "load_run",
           "prepare_for_method", "resolve_model"]
