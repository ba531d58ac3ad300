"""``drift.json`` as a typed value: :class:`DriftRecord` and its parts (see :mod:`lorascope.records`).

The record is what :func:`~lorascope.drift.run.run_drift` returns and writes, and what the study,
the command line and the report read back. Its parts mirror the analysis steps: the pipeline
controls (:class:`DriftControl`), each run's drift by layer (:class:`DriftRun`), each method's
summary over seeds (:class:`MethodSummary`, :class:`NoiseFloor`, :class:`BetweenSeedDrift`), the
LoRA vs full comparison with its tests and verdicts (:class:`DriftComparison`), and the optional
robustness table and sweep frontier.

A statistic that is undefined for the runs at hand (one seed pair, a drift of 0) is stored as
:class:`Undefined`, which says why. Optional parts a file did not have stay unset: the record
writes back exactly the keys it read (:class:`~lorascope.records.ExactKeysRecord`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import JsonValue

from lorascope.provenance import Provenance
from lorascope.records import ExactKeysRecord, RecordPart, StoredTest

Bounds = list[float | None]  # [low, high] of an interval; None: undefined or unbounded



class Undefined(RecordPart):
    """A statistic the runs do not allow, and why (``error``); ``scale`` where an interval says which it would use."""

    error: str
    scale: str | None = None


# --- runs and controls ---------------------------------------------------------------------------


class DriftControl(RecordPart):
    """A pipeline control (see :mod:`lorascope.drift.controls`): drift = 1 − CKA over the layers."""

    name: str
    expectation: str
    max_drift: float
    mean_drift: float
    mean_drift_debiased: float
    passed: bool


class DriftLayer(RecordPart):
    """One layer of one run (layer 0: the embeddings' output); ``ci_low``/``ci_high``: the drift's
    95% bootstrap interval over samples."""

    layer: int
    cka: float | None
    cka_debiased: float | None
    cosine: float | None
    drift: float | None
    drift_debiased: float | None
    ci_low: float | None
    ci_high: float | None


class LearningCheck(RecordPart):
    """A run's learning check as its ``metrics.json`` records it (see :mod:`lorascope.train.learned`)."""

    learned: bool
    reasons: list[str] = []
    metric: str | None = None
    majority_baseline: float | None = None
    margin: float | None = None
    predicted_share: float | None = None


class DriftRunMeans(RecordPart):
    """One fine-tuned run's drift from the base averaged over the verdicts' layers (with its 95%
    bootstrap interval over samples), and its learning check.

    Attributes:
        method: the run's label (its variant where it has one).
        metric: its main dev metric (None when it recorded none).
        thirds: mean drift of the early, middle and late third of the layers.
    """

    method: str
    seed: int
    metric: float | None
    mean_drift: float
    mean_drift_ci: Bounds
    mean_drift_debiased: float
    mean_drift_debiased_ci: Bounds
    mean_cosine: float
    n_samples: int
    thirds: dict[str, float] = {}
    learning: LearningCheck | None = None


class DriftRun(DriftRunMeans):
    """One fine-tuned run's drift from the base: averaged, and per layer."""

    layers: list[DriftLayer]


class SkippedRun(RecordPart):
    """A run of the task that failed, so has no drift."""

    run: str
    reason: str | None


# --- each method over its seeds ------------------------------------------------------------------


class MeasureStats(RecordPart):
    """Mean ± sd over seeds (``sd`` None under 2); drift measures add ``ci_seeds`` (t over seeds)
    and ``ci_seeds_samples`` (hierarchical bootstrap over seeds and samples)."""

    mean: float | None
    sd: float | None
    n: int
    ci_seeds: Bounds | None = None
    ci_seeds_samples: Bounds | None = None


class MethodSummary(RecordPart):
    """One method's runs summarised: ``layer_drift_mean``/``_sd`` are per layer [n_layers averaged]."""

    seeds: list[int]
    drift: MeasureStats
    drift_debiased: MeasureStats
    cosine: MeasureStats
    metric: MeasureStats
    layer_drift_mean: list[float]
    layer_drift_sd: list[float] | None
    thirds: dict[str, float]


class NoiseFloor(RecordPart):
    """The sd over seeds of one method's drift from the base, with chi-square intervals."""

    n: int
    sd: float
    sd_ci: Bounds
    sd_debiased: float
    sd_debiased_ci: Bounds
    confidence: float
    what: str


class SeedPairDrift(RecordPart):
    """Drift between the runs of two seeds of one method."""

    seeds: list[int]
    mean_drift: float
    mean_drift_debiased: float


class BetweenSeedDrift(RecordPart):
    """Every seed pair's drift between its two runs, and the mean over pairs."""

    pairs: list[SeedPairDrift]
    mean_drift: float
    mean_drift_debiased: float


# --- LoRA vs full: tests, intervals, verdicts ----------------------------------------------------


class MeanInterval(RecordPart):
    """Student t interval of a mean over seed pairs."""

    low: float | None
    high: float | None
    method: str
    n: int


class LayerTest(RecordPart):
    """The paired t-test of full − LoRA drift at one layer, Holm-adjusted over every layer (an undefined p counted as
    1, its ``p_holm`` None). Files written before that have no ``p_holm`` or ``reject_holm`` where any p was undefined."""

    layer: int
    mean_delta: float
    test: str | None = None
    n: int | None = None
    statistic: float | None = None
    p_value: float | None = None
    alternative: str | None = None
    min_attainable_p: float | None = None
    n_resamples: int | None = None
    note: str = ""
    error: str | None = None
    p_holm: float | None = None
    reject_holm: bool | None = None


class PerLayerTests(RecordPart):
    """Every layer's test (``layers``), or a ``note`` why there are none."""

    test: str | None = None
    alpha: float | None = None
    layers: list[LayerTest] = []
    note: str | None = None


class LogRatioSummary(RecordPart):
    """Per-seed log ratios LoRA / full: the geometric-mean ratio and Δ% with t intervals, and both tests
    (see :class:`~lorascope.stats.logratio.LogRatioSummary`)."""

    scale: str
    n: int
    gm_ratio: float | None
    gm_ratio_ci: Bounds
    confidence: float
    reduction_percent: float | None
    reduction_percent_ci: Bounds
    ci_method: str
    mean_log_ratio: float | None
    sd_log_ratio: float | None
    ratio_of_means: float | None
    t_test: StoredTest
    sign_flip: StoredTest


class ReductionInterval(RecordPart):
    """Δ% with its hierarchical-bootstrap interval over seeds and samples, on the scale ``scale`` names."""

    estimate: float | None
    low: float | None
    high: float | None
    confidence: float
    method: str
    n: int
    n_resamples: int | None = None
    note: str = ""
    scale: str | None = None  # None: written before the scale was recorded (the ratio of mean drifts)
    mean_log_ratio: float | None = None
    mean_log_ratio_ci: Bounds | None = None


class NoiseCaveat(RecordPart):
    """Could the seeds alone make this difference? (see :func:`~lorascope.drift.analysis.noise_caveat`)."""

    applies: bool
    scale: str
    estimate: float
    ci: Bounds
    no_difference: float
    n: int
    confidence: float
    method: str
    text: str


class CrossedDifference(RecordPart):
    """A metric difference over seeds × dev examples (two-way random effects), with its test where stored."""

    estimate: float | None
    low: float | None
    high: float | None
    confidence: float
    method: str
    se: float | None
    se_seeds_only: float | None
    df: float | None
    n_seeds: int
    n_examples: int
    var_seeds: float | None
    var_examples: float | None
    test: StoredTest | None = None


class SeedsOnlyDifference(RecordPart):
    """A metric difference over seed pairs, the dev set fixed."""

    low: float | None
    high: float | None
    confidence: float
    method: str
    n: int
    test: StoredTest | Undefined


class MetricDifference(RecordPart):
    """Mean LoRA − full task metric, over seeds and (given per-example predictions) over seeds and dev examples."""

    estimate: float
    seeds_only: SeedsOnlyDifference
    seeds_and_examples: CrossedDifference | None
    note: str


class SeedsNeeded(RecordPart):
    """Seed pairs for 80% power (see :func:`~lorascope.stats.power.seeds_needed`)."""

    t: int | None = None
    t_range: list[int | None] = [None, None]
    exact_floor: int | None = None
    power: float | None = None
    confidence: float | None = None
    effect_size_dz: float | None = None
    effect_size_dz_ci: Bounds = [None, None]
    note: str = ""


class VerdictFamily(RecordPart):
    """Whom a verdict's p was adjusted with."""

    method: str
    size: int
    members: list[str] = []
    complete: bool
    note: str = ""


class VerdictDetails(RecordPart):
    """The numbers behind a verdict's estimate: the log-ratio summary (drift) or the crossed difference (metric)."""

    log_ratio: LogRatioSummary | None = None
    crossed: CrossedDifference | None = None
    note: str | None = None


class StoredVerdict(RecordPart):
    """A decided hypothesis, as :class:`~lorascope.stats.verdict.Verdict` writes it (NaN stored as None).

    ``decisive`` is the name files written before ``robust_to_normality`` used.
    """

    hypothesis: str
    claim: str
    status: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: str
    confidence: float
    n: int
    p_value: float | None
    test: StoredTest
    alpha: float
    n_comparisons: int
    corrected_alpha: float | None
    message: str
    secondary: StoredTest | None = None
    secondary_status: str | None = None
    tests_agree: bool = True
    reverse_p_value: float | None = None
    secondary_reverse_p_value: float | None = None
    seeds_needed: SeedsNeeded | None = None
    extra: dict[str, StoredTest] = {}
    p_adjusted: float | None = None
    reverse_p_adjusted: float | None = None
    secondary_p_adjusted: float | None = None
    secondary_reverse_p_adjusted: float | None = None
    correction: str = "none"
    family: VerdictFamily | None = None
    primary_hypothesis: bool = True
    meets_claim: bool = False
    estimate_text: str = ""
    uncertainty: str = "seeds"
    details: VerdictDetails = VerdictDetails()
    robust_to_normality: bool | None = None
    decisive: bool | None = None


class NoVerdict(RecordPart):
    """A declared hypothesis that was not decided, and why (``not_interpretable``: the runs did not learn)."""

    error: str
    not_interpretable: bool | None = None


class ComparisonFamily(RecordPart):
    """The family a task's verdicts were adjusted in (``complete`` once the study adjusted all tasks together)."""

    method: str
    size: int
    members: list[str] = []
    hypotheses: list[str]
    primary: list[str]
    n_tasks: int | None = None
    alpha: float
    complete: bool


class DriftComparison(RecordPart):
    """One LoRA label against full fine-tuning, paired by seed (see :func:`~lorascope.drift.compare.compare_methods`).

    Attributes:
        drift_lora, drift_full: layer-averaged drift per paired seed [n_pairs] (``_debiased``: debiased CKA).
        reduction_percent: Δ% = 100 · (1 − geometric mean of the per-seed ratios), or of the means
            where a drift is ≤ 0 (``reduction_scale`` says which).
        paired_t, sign_flip: full − LoRA drift over the seed pairs, two-sided.
        verdicts: the declared hypotheses, decided (or why not).
        not_interpretable: why no verdict may be read (the runs did not learn), when so.
        note: why the comparison stops early (no seed pair, one seed pair).
    """

    paired_seeds: list[int]
    n_pairs: int
    primary_test: str = "t"
    note: str | None = None
    drift_lora: list[float] = []
    drift_full: list[float] = []
    drift_debiased_lora: list[float] = []
    drift_debiased_full: list[float] = []
    reduction_percent: float | None = None
    reduction_percent_debiased: float | None = None
    reduction_scale: str | None = None
    reduction_scale_debiased: str | None = None
    reduction_percent_of_means: float | None = None
    reduction_percent_of_means_debiased: float | None = None
    paired_t: StoredTest | Undefined | None = None
    sign_flip: StoredTest | Undefined | None = None
    cohens_d: float | None = None
    mean_delta_ci_t: MeanInterval | Undefined | None = None
    per_layer: PerLayerTests | None = None
    log_ratio: LogRatioSummary | Undefined | None = None
    log_ratio_debiased: LogRatioSummary | Undefined | None = None
    reduction_ci_seeds_samples: ReductionInterval | Undefined | None = None
    reduction_ci_seeds_samples_debiased: ReductionInterval | Undefined | None = None
    noise_caveat: NoiseCaveat | None = None
    metric_difference: MetricDifference | None = None
    verdicts: dict[str, StoredVerdict | NoVerdict] = {}
    family: ComparisonFamily | None = None
    runs_not_learned: list[str] = []
    not_interpretable: str | None = None


# --- robustness and the sweep's frontier ---------------------------------------------------------


class RobustnessRun(RecordPart):
    """One run's drift by each alternative measure (measure -> value)."""

    method: str
    seed: int
    measures: dict[str, float]


class RobustnessRow(RecordPart):
    """One measure: LoRA's and full FT's means over seeds, their log-ratio summary and its direction."""

    measure: str
    description: str
    layers: str
    is_verdict_measure: bool
    lora_mean: float | None
    full_mean: float | None
    n_pairs: int
    ratio: LogRatioSummary | None
    direction: str | None
    note: str


class Robustness(RecordPart):
    """The verdicts' pair [LoRA label, full label] by every measure of :mod:`lorascope.drift.robustness`."""

    pair: list[str | None]
    runs: list[RobustnessRun]
    rows: list[RobustnessRow]


class FrontierPoint(RecordPart):
    """One swept point: its metric and geometric-mean drift over seeds, with intervals."""

    label: str
    method: str
    setting: float
    n_seeds: int
    metric_mean: float | None
    metric_ci: Bounds
    drift_gmean: float | None
    drift_ci: Bounds


class MatchedComparison(RecordPart):
    """Drift of ``method_a`` relative to ``method_b`` at the accuracy both reach (see
    :func:`~lorascope.stats.frontier.matched_accuracy`)."""

    method_a: str
    method_b: str
    n_levels: int
    n_resamples: int
    overlap: Bounds
    n_points: dict[str, int]
    ratio: float | None
    ci: Bounds
    p: float | None
    ci_method: str = "bootstrap over seeds, percentile interval"  # as written before the interval was calibrated
    n_overlapping_resamples: int | None = None
    outcome: str
    statement: str


class SettingInteraction(RecordPart):
    """The method × setting-level interaction on log drift (``p`` None with the reason when the design allows no test)."""

    test: str
    n: int
    levels: dict[str, int]
    F: float | None
    df: list[int | float] | None
    p: float | None
    statement: str


class Frontier(RecordPart):
    """A sweep's frontier: one row per point, and (with points of both methods) the two comparisons."""

    table: list[FrontierPoint]
    missing: list[str]
    seeds: list[int] | None = None
    matched: MatchedComparison | None = None
    interaction: SettingInteraction | None = None


class SelectedPoint(RecordPart):
    """The swept point a method's declared rule selected, the value it was selected by per point, and the rule."""

    label: str
    by: str
    values: dict[str, float]
    rule: str


# --- the record ----------------------------------------------------------------------------------


class LayerRange(RecordPart):
    """The layers the verdicts average: as configured (``verdicts``) and as indices (``averaged``)."""

    verdicts: str
    averaged: list[int]


class Extraction(RecordPart):
    """Where and in which dtype the states were extracted, and the zero-drift controls' tolerance there."""

    device: str
    compute_dtype: str
    control_tolerance: float


class DriftRecord(ExactKeysRecord):
    """``drift/<task>/drift.json``: the base against every finished run of one task.

    Attributes:
        n_samples: samples the states were extracted for (``n_samples_note``: fewer than asked, why).
        sample_ids: their ids, in extraction order [n_samples].
        methods, noise_floor, between_seed_drift: per run label (the latter two None under 2 seeds).
        variants: each label's method settings (``method``, ``variant``, the LoRA settings).
        primary: the LoRA label whose comparison is ``comparison``; ``comparisons`` holds every label's.
        robustness: present when the analysis ran the alternative measures.
        frontier, selection: present for a swept study.
        config: the analysis' settings as run.
    """

    KIND: ClassVar[str] = "drift"
    FILE: ClassVar[str] = "drift.json"

    task: str
    base: str
    pooling: str
    n_samples: int
    n_samples_note: str = ""
    n_layers: int
    layers: LayerRange | None = None
    dev_examples_note: str = ""
    extraction: Extraction | None = None
    sample_ids: list[str] = []
    controls: list[DriftControl]
    runs: list[DriftRun]
    skipped_runs: list[SkippedRun] = []
    methods: dict[str, MethodSummary]
    noise_floor: dict[str, NoiseFloor | None] = {}
    between_seed_drift: dict[str, BetweenSeedDrift | None] = {}
    variants: dict[str, dict[str, JsonValue]] = {}
    primary: str | None = None
    comparison: DriftComparison
    comparisons: dict[str, DriftComparison] = {}
    robustness: Robustness | None = None
    frontier: Frontier | None = None
    selection: dict[str, SelectedPoint] | None = None
    config: dict[str, JsonValue] = {}
    provenance: Provenance | None = None
