"""What the study's numbers cannot say, computed from them: power of each test at the study's n,
interval coverage, tasks whose models did not learn, differences inside the seed noise."""

from __future__ import annotations

from dataclasses import dataclass, field

from lorascope.drift.record import DriftComparison, LogRatioSummary, NoiseCaveat, NoiseFloor, StoredVerdict
from lorascope.metrics import format_number, format_significant
from lorascope.provenance import Hardware
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import not_learned, task_learning
from lorascope.report.templating import render_template
from lorascope.report.verdict_text import CORRECTIONS, Family, decided_verdicts, family_shape
from lorascope.stats.hierarchical import plain_bootstrap_coverage
from lorascope.variants import recorded_primary


def _family_words(v: StoredVerdict, family: Family | None) -> str:
    """Who a group's verdicts were adjusted with and the level the correction starts at."""
    alpha, m, corrected = v.alpha, v.n_comparisons, v.corrected_alpha
    if m == 1:
        return f"its one verdict at α = {format_significant(alpha, 6)}"
    if "p_adjusted" not in v.model_fields_set:  # decided before verdicts were adjusted as one family
        return f"every verdict at α = {format_significant(alpha, 6)}/{m} = {format_significant(corrected, 4)} (Bonferroni over {m} tasks)"
    name = CORRECTIONS.get(v.correction, v.correction)
    shape = family_shape(family)
    how = (f"adjusted together by {name}" if family is None or family.complete else
           f"adjusted by {name} within each task and Bonferroni over tasks")
    step = "Holm's first step" if v.correction == "holm" else f"{name}'s level for every verdict"
    return (f"a family of {m} verdicts{shape} {how} at family-wise α = {format_significant(alpha, 6)}, whose strictest level ({step}) is "
            f"α/{m} = {format_significant(corrected, 4)}: the smallest p of a test's family must reach it before that test decides any "
            "verdict")


@dataclass
class PowerItem:
    """One limitations item on the tests' power: ``tasks`` and their seed pairs ``n``. A task without tests has no
    ``family`` (``untrained``: why its models did not learn; None: fewer than 2 seed pairs); a group of tasks with the
    same n and ``family`` (:func:`_family_words`) has the exact sign-flip test's smallest p, 2^-n (``one_sided``,
    ``two_sided``), and the seed pairs it needs to reach the family's strictest level (``floor``; None where it can)."""

    n: int
    tasks: list[str] = field(default_factory=list)
    untrained: str | None = None
    family: str | None = None
    one_sided: float | None = None
    two_sided: float | None = None
    floor: int | None = None


def power_items(data: StudyRecords) -> list[PowerItem]:
    """The power of the tests at the study's n: one item per task without tests, then one per group of tasks with
    the same n and family."""
    from lorascope.stats.power import exact_floor_pairs

    groups: dict[tuple[int, str, float], PowerItem] = {}
    items: list[PowerItem] = []
    untrained = not_learned(data)
    for task, d in data.drift.items():
        vs, n = decided_verdicts(d.comparison), d.comparison.n_pairs
        if task in untrained or (not vs and n < 2):  # not learned: no test, whatever n would allow
            items.append(PowerItem(n=n, tasks=[task], untrained=untrained.get(task)))
        elif vs:
            v, corrected, one = vs[0], vs[0].corrected_alpha or vs[0].alpha, 2.0 ** -vs[0].n
            family = _family_words(v, d.comparison.family or v.family)
            groups.setdefault((v.n, family, corrected), PowerItem(
                n=v.n, family=family, one_sided=one, two_sided=2.0 ** (1 - v.n),
                floor=None if one <= corrected else exact_floor_pairs(corrected))).tasks.append(task)
    return items + list(groups.values())


def disagreement_items(data: StudyRecords) -> list[tuple[str, StoredVerdict]]:
    """(task, verdict) for every verdict of a learned task whose primary and secondary tests disagree."""
    untrained = not_learned(data)
    return [(task, v) for task, d in data.drift.items() if task not in untrained
            for v in decided_verdicts(d.comparison) if not v.tests_agree]


def noise_of(comparison: DriftComparison) -> NoiseCaveat | None:
    """The comparison's noise caveat: ``noise_caveat`` as drift.json records it, or for results written
    before it was recorded the same check computed from their per-seed drifts (None below 2 pairs)."""
    if "noise_caveat" in comparison.model_fields_set:
        return comparison.noise_caveat
    lora, full = comparison.drift_lora, comparison.drift_full
    if not lora or not full or len(lora) != len(full) or len(lora) < 2:
        return None
    import numpy as np

    from lorascope.drift.analysis import noise_caveat

    return NoiseCaveat.model_validate(noise_caveat(np.asarray(lora, dtype=float), np.asarray(full, dtype=float)))


def noise_items(data: StudyRecords) -> list[str]:
    """Tasks where the paired interval of the drift ratio (or difference) includes no difference: the
    training seed alone could produce it."""
    untrained = not_learned(data)
    return [f"{task}: {caveat.text}." for task, d in data.drift.items()
            if task not in untrained and (caveat := noise_of(d.comparison)) and caveat.applies]


def dev_example_items(data: StudyRecords) -> list[str]:
    """Tasks whose metric differences treat the dev examples as fixed, and why (drift.json's notes)."""
    out = []
    for task, d in data.drift.items():
        difference = d.comparison.metric_difference
        note = d.dev_examples_note or (difference.note if difference else None)
        if note and not (difference and difference.seeds_and_examples):
            out.append(f"{task}: {note}.")
    return out


def learning_items(data: StudyRecords) -> list[tuple[str, str, str]]:
    """(task, label, why its models did not learn) for every method variant that did not learn where the primary
    comparison stands (a task whose primary comparison did not learn has its item among the power items: it is
    why nothing is tested)."""
    untrained = not_learned(data)
    return [(task, label, learning.statement()) for task, d in data.drift.items() if task not in untrained
            for label in d.comparisons if label != recorded_primary(d.primary)
            for learning in [task_learning(data, task, label)] if not learning.learned]


def limitations(data: StudyRecords) -> str:
    """The report's "Limitations" section: power, test disagreements, sample sizes, hardware, skipped and failed units."""
    hardware = data.provenance.hardware if data.provenance else None
    comparisons = [d.comparison for d in data.drift.values()]
    return render_template(
        "limitations.md.j2", power=power_items(data), disagreements=disagreement_items(data),
        log_ratio=any(isinstance(c.log_ratio, LogRatioSummary) and c.log_ratio.gm_ratio is not None for c in comparisons),
        dev_examples=dev_example_items(data), n_samples=sorted({d.n_samples for d in data.drift.values()}),
        plain_bootstrap=[(k, plain_bootstrap_coverage(k)) for k in sorted({c.n_pairs for c in comparisons if c.n_pairs >= 2})],
        config=data.config, hw=hardware or Hardware(), drift=data.drift,
        drift_skipped=data.drift_skipped, learning=learning_items(data), noise=noise_items(data),
        lens_skipped=[(lens, task, why) for lens, skipped in data.lens_skipped.items() for task, why in skipped.items()
                      if task not in data.lens(lens)],
        failed=[r.folder for r in data.runs if not r.record.ok])


def spread_text(floor: NoiseFloor | None) -> str:
    """The noise floor of one method: sd over seeds with its interval."""
    if not floor:
        return "–"
    lo, hi = floor.sd_ci
    return f"{format_number(floor.sd, 4)} [{format_number(lo, 4)}, {format_number(hi, 4)}]"
