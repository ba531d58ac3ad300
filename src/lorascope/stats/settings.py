"""The statistics settings of a comparison: the family-wise α, the hypotheses' thresholds, the primary test,
and the declared family of hypotheses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lorascope.config import StrictModel
from lorascope.stats.family import HypothesisFamily


class StatisticsSettings(StrictModel):
    """How LoRA and full fine-tuning are compared across seeds (read by the verdicts and the report)."""

    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples over samples (0: none)")
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise alpha over every verdict of the study "
                         "(declared hypotheses × tasks, see family)")
    margin: float = Field(0.03, gt=0, description="H1a: LoRA within this many metric points (fraction) of full FT")
    min_reduction: float = Field(0.2, ge=0, lt=1, description="H1b: LoRA drift at least this fraction lower "
                                 "(geometric mean over seeds of the per-seed ratio)")
    test: Literal["t", "sign-flip"] = Field("t", description="primary test of every verdict (the protocol's paired "
                                            "t-test, or the exact sign-flip test); the other is always reported beside it")
    family: HypothesisFamily = Field(default_factory=lambda: HypothesisFamily(),
                                     description="the hypotheses tested, which are primary, and the correction over "
                                                 "hypotheses × tasks (declared before the study runs)")
