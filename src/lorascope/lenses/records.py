"""The lenses' records: ``forgetting.json`` and ``probes.json`` as typed values (see :mod:`lorascope.records`).

Both lenses measure every finished run, check themselves with controls, and compare LoRA with full
fine-tuning per measure (:func:`~lorascope.lenses.compare.compare_variants`); the shapes they share
are here once: :class:`LensRun`, :class:`LensControl`, :class:`LensComparison`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from lorascope.records import StageRecord


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoredTest(_Frozen):
    """A :class:`~lorascope.stats.result.TestResult` as JSON holds it (NaN and inf stored as None)."""

    test: str
    n: int
    statistic: float | None
    p_value: float | None
    alternative: str
    min_attainable_p: float | None = None
    n_resamples: int | None = None
    note: str = ""


class MeasureComparison(_Frozen):
    """One measure over the runs of a LoRA label and of the full fine-tuning label it is compared with.

    Attributes:
        lora_n, lora_mean, lora_sd: runs of the LoRA label, their mean and sample sd (None under 2 runs).
        full_n, full_mean, full_sd: the same for full fine-tuning.
        paired_t, sign_flip: full − LoRA over the seed pairs, two-sided (None under 2 pairs).
    """

    lora_n: int
    lora_mean: float | None
    lora_sd: float | None
    full_n: int
    full_mean: float | None
    full_sd: float | None
    paired_t: StoredTest | None = None
    sign_flip: StoredTest | None = None


class PairComparison(_Frozen):
    """Every measure of one LoRA label against full fine-tuning, on the seeds both have."""

    seeds: list[int]
    measures: dict[str, MeasureComparison]


class LensComparison(PairComparison):
    """The compared pair's measures at the top level, and every LoRA label's under ``variants``.

    Attributes:
        primary: the LoRA label compared at the top level.
        reference: the full fine-tuning label it is compared with.
    """

    primary: str
    reference: str
    variants: dict[str, PairComparison]


class LensRun(_Frozen):
    """One run as a lens measured it: ``summary`` maps each measure to its value."""

    run: str
    method: str
    seed: int
    summary: dict[str, float]


class LensControl(BaseModel):
    """A control the lens passed before it wrote anything (a failed one stops the lens).

    Attributes:
        name: which control.
        passed: always true in a written record.

    What each control measured differs by control, and is kept as further fields.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str
    passed: bool

    def measured(self) -> dict[str, Any]:
        """The control's measurements (every field but ``name`` and ``passed``)."""
        return dict(self.model_extra or {})


class ForgettingRecord(StageRecord):
    """``forgetting/<task>/forgetting.json``: held-out language-modelling loss of the base and of every run.

    Attributes:
        config: the lens's settings as run.
        text_source: where the held-out passages came from.
        n_texts: passages scored.
        base_loss, base_perplexity: the base model's loss (nats per token) and its exponential.
        controls: the six controls (see :mod:`lorascope.lenses.forgetting`).
        runs: each run's ``loss``, ``perplexity`` and ``forgetting`` (its loss − the base's).
        comparison: ``forgetting`` and the other measures, LoRA against full fine-tuning.
    """

    KIND: ClassVar[str] = "forgetting"
    FILE: ClassVar[str] = "forgetting.json"

    config: dict[str, Any]
    text_source: str
    n_texts: int
    base_loss: float
    base_perplexity: float
    controls: list[LensControl]
    runs: list[LensRun]
    comparison: LensComparison


class ProbesRecord(StageRecord):
    """``probes/<task>/probes.json``: linear-probe accuracy on other tasks, of the base and of every run.

    Attributes:
        config: the lens's settings as run.
        probe_tasks: the tasks probed.
        base, majority: per probe task, the base's probe accuracy and the majority label's share.
        uninformative: probe tasks where the base's probe does not beat the majority label.
        controls: the LoRA-at-init control.
        runs: each run's ``retention`` (mean over probe tasks), ``retention_<task>`` and ``accuracy_<task>``.
        comparison: the retentions, LoRA against full fine-tuning.
    """

    KIND: ClassVar[str] = "probes"
    FILE: ClassVar[str] = "probes.json"

    config: dict[str, Any]
    probe_tasks: list[str]
    base: dict[str, float]
    majority: dict[str, float]
    uninformative: list[str]
    controls: list[LensControl]
    runs: list[LensRun]
    comparison: LensComparison
