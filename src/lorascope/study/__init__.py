"""Studies: the whole protocol — sanity, baselines, training grid, drift, serving, report — in one resumable run."""

from lorascope.study.config import StudyConfig, load_study
from lorascope.study.runner import run_study

__all__ = ["StudyConfig", "load_study", "run_study"]
