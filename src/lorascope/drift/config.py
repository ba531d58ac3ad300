"""The settings of a drift analysis (kept apart from the analysis, so that reading them imports no model code)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from lorascope.config import StrictModel
from lorascope.represent.config import Pooling


class DriftConfig(StrictModel):
    """Drift of every trained run of one task from its base model."""

    task: str | None = Field(None, description="GLUE task, task YAML file or training run folder (default: the task "
                                               "of the runs under 'runs', when they all share one)")
    base: str = Field("minilm", description="the base model the runs were trained from")
    runs: str = Field("runs", description="folder whose sub-folders are training runs (metrics.json)")
    n_samples: PositiveInt = Field(750, description="dev samples compared (all where the split is smaller)")
    data_seed: int = Field(0, description="seed of the deterministic sample subset")
    max_length: PositiveInt = Field(384, description="truncation for extraction (identical for every model)")
    batch_size: PositiveInt = Field(32, description="extraction batch size")
    pooling: Pooling = Field("mean", description="pooled states compared: mean or head_token")
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples over samples (0: none)")
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise alpha")
    n_tasks: PositiveInt = Field(1, description="tasks in the study: alpha is Bonferroni-split over them")
    margin: float = Field(0.03, gt=0, description="H1a: LoRA within this many metric points (fraction) of full FT")
    min_reduction: float = Field(0.2, ge=0, lt=1, description="H1b: LoRA drift at least this fraction lower")
    test: Literal["t", "sign-flip"] = Field("t", description="primary test of every verdict (the protocol's paired "
                                            "t-test, or the exact sign-flip test); the other is always reported beside it")
    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR)")
