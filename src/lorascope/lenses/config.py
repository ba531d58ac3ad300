"""The settings of the weight lens (kept apart from it, so that reading them imports no model code)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveInt

from lorascope.config import StrictModel
from lorascope.models.device import DeviceSettings, ExtractionSettings
from lorascope.weight_update.defaults import DEFAULT_EPSILON, DEFAULT_TOP_K


class LensRuns(StrictModel):
    """Which runs a lens measures, and the base they were trained from."""

    base: str = Field("minilm", description="the base model the runs were trained from")
    runs: str = Field("runs", description="folder whose sub-folders are training runs (metrics.json)")
    task: str | None = Field(None, description="only the runs of this task (by name; default: every run)")
    pair: list[str] | None = Field(None, min_length=2, max_length=2,
                                   description="the two method labels compared, LoRA's then full FT's (a study's "
                                               "sweep fills it in by its selection rule; default: every LoRA label "
                                               "against full)")


class WeightLensSettings(StrictModel):
    """How intruder dimensions are counted, whatever the runs (a study holds these)."""

    top_k: PositiveInt = Field(DEFAULT_TOP_K, description="singular vectors of each fine-tuned matrix examined for intruders")
    epsilon: float = Field(DEFAULT_EPSILON, gt=0, le=1, description="a singular vector is an intruder when its largest "
                           "|cosine| with the base matrix's singular vectors is below this")
    # Each a threshold as epsilon is: a |cosine| bound out of (0, 1], else every vector or none is an intruder.
    epsilon_sweep: list[Annotated[float, Field(gt=0, le=1)]] = Field([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                                       description="thresholds at which intruders are also counted (the paper's sweep)")


class WeightLensConfig(WeightLensSettings, LensRuns, DeviceSettings):
    """Which runs, from which base, and how intruder dimensions are counted (the runs must share one task's labels).

    ``device`` is where the base model is loaded to read its matrices; the measures themselves
    (SVDs in float64) run on the CPU.
    """


class ForgettingSettings(StrictModel):
    """Which held-out text the language-model loss is measured on (a study holds these)."""

    text_file: str | None = Field(None, description="held-out text, one passage per line (default: the premises of "
                                                    "RTE's dev split, news and Wikipedia text already on disk)")
    n_texts: PositiveInt = Field(200, description="passages scored (the first ones of the file or split)")
    max_length: PositiveInt = Field(128, description="tokens per passage (longer ones are truncated)")
    batch_size: PositiveInt = Field(16, description="passages per forward pass")


class ForgettingConfig(ForgettingSettings, LensRuns, DeviceSettings):
    """The runs whose forgetting is measured, and their base (a decoder with a language-model head).

    The losses are computed in float32 on ``device``: the controls compare them to 1e-9.
    """

    data_dir: str | None = Field(None, description="GLUE folder for the default held-out text (default: $GLUE_DIR)")


class ProbeSettings(StrictModel):
    """How much of another task's information a model's representations keep (a study holds these)."""

    probe_tasks: list[str] = Field(default_factory=list, description="tasks probed (GLUE names or task files; in a "
                                   "study, empty means the study's other tasks)")
    n_train: PositiveInt = Field(500, description="training examples of each probe task the probe is fitted on")
    n_dev: PositiveInt = Field(200, description="dev examples of each probe task it is scored on")
    c: float = Field(1.0, gt=0, description="inverse L2 regularisation of the logistic regression (fixed, not tuned)")
    max_length: PositiveInt = Field(128, description="truncation of the probe texts")
    batch_size: PositiveInt = Field(32, description="extraction batch size")


class ProbeConfig(ProbeSettings, LensRuns, ExtractionSettings):
    """The runs whose probe retention is measured, and their base (features extracted on ``device``)."""

    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR)")
