"""The settings of a drift analysis (kept apart from the analysis, so that reading them imports no model code).

They are composed, not copied: the samples and their encoding come from
:class:`~lorascope.represent.config.SampleSettings`, the statistics from
:class:`~lorascope.stats.settings.StatisticsSettings`; a study holds :class:`DriftSettings` and adds
the task, base and runs of each comparison.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from lorascope.models.device import ExtractionSettings
from lorascope.represent.config import Pooling, SampleSettings
from lorascope.stats.settings import StatisticsSettings


class DriftSettings(StatisticsSettings, SampleSettings):
    """How drift is measured and tested, whatever the task and runs."""

    pooling: Pooling = Field("mean", description="pooled states compared: mean or head_token")
    layers: Literal["all", "blocks"] = Field(
        "all", description="layers the verdicts' drift averages: all (the embedding output and every block, the "
                           "protocol's definition) or blocks (the embedding output left out: LoRA on attention "
                           "matrices cannot move it); the other choice is reported beside the verdicts")
    robustness: bool = Field(True, description="also measure drift by Procrustes distance, RBF-kernel CKA, mutual "
                                               "nearest neighbours and the other layer choice (descriptive rows "
                                               "beside the verdicts)")


class DriftConfig(DriftSettings, ExtractionSettings):
    """Drift of every trained run of one task from its base model (a study sets ``device`` from its own)."""

    task: str | None = Field(None, description="GLUE task, task YAML file or training run folder (default: the task "
                                               "of the runs under 'runs', when they all share one)")
    base: str = Field("minilm", description="the base model the runs were trained from")
    runs: str = Field("runs", description="folder whose sub-folders are training runs (metrics.json)")
    n_tasks: PositiveInt = Field(1, description="tasks in the study: this task's verdicts are Holm-adjusted within "
                                                "the task and Bonferroni over tasks, until the study adjusts all together")
    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR)")
    pair: list[str] | None = Field(None, min_length=2, max_length=2,
                                   description="the two method labels the verdicts compare, LoRA's then full FT's "
                                               "(a study's sweep fills it in by its selection rule; default: lora "
                                               "and full)")
    sweep_points: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="a sweep's points: label -> {method, setting}; with points of both "
                                          "methods, drift.json adds the frontier")
    sweep_seeds: list[int] | None = Field(None, description="the seeds every sweep point was trained with: the "
                                                             "frontier is drawn over these (default: every run)")
    selection: dict[str, Any] = Field(default_factory=dict,
                                      description="how the sweep chose each method's compared point (recorded as is)")
