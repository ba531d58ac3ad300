"""The lenses' records: ``weights.json``, ``forgetting.json`` and ``probes.json`` as typed values
(see :mod:`lorascope.records`).

Each lens measures every finished run and compares LoRA with full fine-tuning per measure
(:func:`~lorascope.lenses.compare.compare_variants`); the shapes they share are here once:
:class:`LensRun`, :class:`LensControl`, :class:`LensComparison`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, JsonValue

from lorascope.records import RecordPart, StageRecord, StoredTest


class MeasureComparison(RecordPart):
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


class PairComparison(RecordPart):
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


class LensRun(RecordPart):
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

    config: dict[str, JsonValue]
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

    config: dict[str, JsonValue]
    probe_tasks: list[str]
    base: dict[str, float]
    majority: dict[str, float]
    uninformative: list[str]
    controls: list[LensControl]
    runs: list[LensRun]
    comparison: LensComparison


class TypeUpdate(RecordPart):
    """One kind of matrix (``q_proj``, ``word_embeddings``...) in a whole-model update: how many, and
    the mean of their ‖ΔW‖_F / ‖W₀‖_F."""

    matrices: int
    relative_update: float


class WholeModelUpdate(RecordPart):
    """A run's update of the whole backbone, every 2-D matrix together (see ``whole_model_summary``).

    Attributes:
        relative_update: sqrt(Σ‖ΔW‖_F²) / sqrt(Σ‖W₀‖_F²) over all ``matrices`` (None for an all-zero base).
        relative_update_without_embeddings: the same without the embedding matrices.
        adapted_share: the share of Σ‖ΔW‖_F² in the like-for-like matrices (None for no update).
        by_type: each kind of matrix on its own.
    """

    matrices: int
    relative_update: float | None
    relative_update_without_embeddings: float | None
    adapted_share: float | None
    by_type: dict[str, TypeUpdate]


class MatrixMeasures(RecordPart):
    """The weight lens on one matrix (:class:`~lorascope.weight_update.update.MatrixUpdate`), its block,
    and its intruders recounted at the matched size."""

    relative_update: float
    stable_rank: float
    entropy_rank: float
    top_singular_values: list[float]
    intruder_similarity: list[float]
    intruders: int
    epsilon: float
    layer: int | None
    intruders_matched: int


class WeightSummary(RecordPart):
    """A run's like-for-like measures, with its whole-model relative updates beside.

    Attributes:
        matrices: the like-for-like matrices measured.
        relative_update, stable_rank, entropy_rank: means over those matrices.
        intruders, intruders_matched: intruder dimensions summed over them (as updated, and at the
            matched size).
        intruders_by_epsilon: the intruder count at each ε of the sweep (``{"0.5": 3}``).
        relative_update_whole, relative_update_whole_without_embeddings: from :class:`WholeModelUpdate`.
    """

    matrices: int
    relative_update: float
    stable_rank: float
    entropy_rank: float
    intruders: int
    intruders_matched: int
    intruders_by_epsilon: dict[str, int]
    relative_update_whole: float | None
    relative_update_whole_without_embeddings: float | None


class WeightRun(RecordPart):
    """One run as the weight lens measured it.

    Attributes:
        summary: its like-for-like measures over the compared LoRA label's matrices.
        summary_whole: its whole-model update.
        per_matrix: every like-for-like matrix's measures, by parameter name.
        summary_by_variant: for full fine-tuning, its summary over each LoRA label's own matrices.
    """

    run: str
    method: str
    seed: int
    summary: WeightSummary
    summary_whole: WholeModelUpdate
    per_matrix: dict[str, MatrixMeasures]
    summary_by_variant: dict[str, WeightSummary] | None = None


class WeightScope(RecordPart):
    """Which matrices each measure covers, in words and counts (``measures``: measure -> scope key)."""

    like_for_like: str
    like_for_like_by_variant: dict[str, str]
    whole_model: str
    whole_model_matrices: int
    whole_model_embeddings: list[str]
    whole_model_without_embeddings: str
    whole_model_excluded: list[str]
    measures: dict[str, str]


class MatchedUpdate(RecordPart):
    """The common relative update at which intruders are recounted, from the compared pair's ``runs``."""

    relative_update: float
    labels: list[str]
    runs: int


class WeightsRecord(StageRecord):
    """``weights/<task>/weights.json``: relative update, effective ranks and intruder dimensions of every run.

    Attributes:
        config: the lens's settings as run.
        matrices: the like-for-like matrices of the compared LoRA label; ``matrices_by_variant``
            those of each LoRA label.
        scope: what each measure covers.
        matched_update: where intruders are recounted at one size for every run.
        runs: each run's measures.
        comparison: the measures, LoRA against full fine-tuning (each LoRA label on its own matrices).
    """

    KIND: ClassVar[str] = "weights"
    FILE: ClassVar[str] = "weights.json"

    config: dict[str, JsonValue]
    matrices: list[str]
    matrices_by_variant: dict[str, list[str]]
    scope: WeightScope
    matched_update: MatchedUpdate
    runs: list[WeightRun]
    comparison: LensComparison
