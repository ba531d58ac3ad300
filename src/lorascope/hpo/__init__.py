"""Hyperparameter search (PROTOCOL.md §1): Optuna TPE over a per-method space, resumable, multi-worker."""

from lorascope.hpo.config import HpoConfig
from lorascope.hpo.search import run_hpo
from lorascope.hpo.space import DEFAULT_SPACES, Choice, Fixed, FloatRange, SearchSpace, resolve_space

__all__ = ["HpoConfig", "run_hpo", "DEFAULT_SPACES", "Choice", "Fixed", "FloatRange", "SearchSpace", "resolve_space"]
