"""What the study's numbers cannot say, computed from them: power of each test at the study's n,
interval coverage, tasks whose models did not learn, differences inside the seed noise."""

from __future__ import annotations

from lorascope.drift.record import DriftComparison, LogRatioSummary, NoiseCaveat, NoiseFloor, StoredVerdict
from lorascope.metrics import format_number, format_p
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import not_learned, task_learning
from lorascope.report.verdict_text import CORRECTIONS, Family, decided_verdicts, family_shape
from lorascope.variants import recorded_primary


def _family_words(v: StoredVerdict, family: Family | None) -> str:
    """Who a group's verdicts were adjusted with and the level the correction starts at."""
    alpha, m, corrected = v.alpha, v.n_comparisons, v.corrected_alpha
    if m == 1:
        return f"its one verdict at α = {alpha:g}"
    if "p_adjusted" not in v.model_fields_set:  # decided before verdicts were adjusted as one family
        return f"every verdict at α = {alpha:g}/{m} = {corrected:.4g} (Bonferroni over {m} tasks)"
    name = CORRECTIONS.get(v.correction, v.correction)
    shape = family_shape(family)
    how = (f"adjusted together by {name}" if family is None or family.complete else
           f"adjusted by {name} within each task and Bonferroni over tasks")
    step = "Holm's first step" if v.correction == "holm" else f"{name}'s level for every verdict"
    return (f"a family of {m} verdicts{shape} {how} at family-wise α = {alpha:g}, whose strictest level ({step}) is "
            f"α/{m} = {corrected:.4g}: the smallest p of a test's family must reach it before that test decides any "
            "verdict")


def power_items(data: StudyRecords) -> list[str]:
    """One sentence per group of tasks with the same n and family: which tests can reach the family's
    strictest level (the exact sign-flip test's smallest one-sided p is 2^-n)."""
    from lorascope.stats.power import exact_floor_pairs

    groups: dict[tuple[int, str, float], list[str]] = {}
    items = []
    untrained = not_learned(data)
    for task, d in data.drift.items():
        vs = decided_verdicts(d.comparison)
        n = d.comparison.n_pairs
        if task in untrained:
            # Why there is no test is that the models did not learn, whatever n would allow.
            items.append(f"{task}: {n} seed pair{'s' if n != 1 else ''}, but no test or effect size is reported: "
                         f"{untrained[task]}. Differences between models that did not learn say nothing about how "
                         "LoRA and full fine-tuning differ.")
        elif vs:
            v = vs[0]
            groups.setdefault((v.n, _family_words(v, d.comparison.family or v.family), v.corrected_alpha or v.alpha),
                              []).append(task)
        elif n < 2:
            items.append(f"{task}: {n} seed pair{'s' if n != 1 else ''} — too few for any test across seeds; only "
                         "sample-level intervals apply.")
    for (n, family, corrected), tasks in groups.items():
        one, two = 2.0 ** -n, 2.0 ** (1 - n)
        exact = (f"can reach it: its smallest p is {format_p(one)} one-sided ({format_p(two)} two-sided)"
                 if one <= corrected else
                 f"cannot reach it whatever the data: its smallest p is {format_p(one)} one-sided ({format_p(two)} "
                 f"two-sided), and {exact_floor_pairs(corrected)} seed pairs are the minimum")
        items.append(f"{', '.join(tasks)}: {n} seed pairs; {family}. The paired t-test (primary) has no floor but "
                     f"assumes roughly normal per-seed differences, which {n} values cannot check; the exact sign-flip "
                     f"test needs no such assumption and {exact}.")
    return items


def disagreement_items(data: StudyRecords) -> list[str]:
    """One item per verdict of a learned task whose primary and secondary tests disagree."""
    out = []
    untrained = not_learned(data)
    for task, d in data.drift.items():
        if task in untrained:
            continue
        for v in decided_verdicts(d.comparison):
            if not v.tests_agree:
                out.append(f"{task}, {v.hypothesis}: the primary test says {v.status}, the "
                           f"{v.secondary.test if v.secondary else 'other test'} says {v.secondary_status}: "
                           "not confirmed by both.")
    return out


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
    out = []
    untrained = not_learned(data)
    for task, d in data.drift.items():
        caveat = noise_of(d.comparison)
        if task not in untrained and caveat and caveat.applies:
            out.append(f"{task}: {caveat.text}.")
    return out


def interval_item(data: StudyRecords) -> str:
    """How the seed-level intervals were made, as the results record it."""
    on_log = any(isinstance(c.log_ratio, LogRatioSummary) and c.log_ratio.gm_ratio is not None
                 for c in (d.comparison for d in data.drift.values()))
    ratio = ("Δ% and the geometric-mean drift ratio from the t interval of the per-seed log ratios, carried back by "
             "exp, so they are asymmetric where the drifts are skewed" if on_log else "Fieller for the ratio Δ%")
    return (f"Seed-level intervals are Student t ({ratio}), which hold their coverage at small n under normality; the "
            "interval over seeds and samples is a hierarchical bootstrap calibrated the same way. A plain bootstrap "
            "over 3 seeds would cover about 74% for a nominal 95% and is not used.")


def dev_example_items(data: StudyRecords) -> list[str]:
    """Tasks whose metric differences treat the dev examples as fixed, and why (drift.json's notes)."""
    out = []
    for task, d in data.drift.items():
        difference = d.comparison.metric_difference
        note = d.dev_examples_note or (difference.note if difference else None)
        if note and not (difference and difference.seeds_and_examples):
            out.append(f"{task}: {note}.")
    return out


def learning_items(data: StudyRecords) -> list[str]:
    """One item per method variant that did not learn where the primary comparison stands (a task whose
    primary comparison did not learn has its item among the power items: it is why nothing is tested)."""
    untrained = not_learned(data)
    items = []
    for task, d in data.drift.items():
        if task in untrained:
            continue
        for label in d.comparisons:
            if label != recorded_primary(d.primary):
                learning = task_learning(data, task, label)
                if not learning.learned:
                    items.append(f"{task}, {label} vs full fine-tuning: {learning.statement()}; that comparison's "
                                 "tests are not reported.")
    return items


def limitations(data: StudyRecords) -> str:
    """The report's "Limitations" section: power, test disagreements, sample sizes, hardware, skipped and failed units."""
    cfg = data.config
    n_samples = sorted({d.n_samples for d in data.drift.values()})
    hardware = (data.provenance or {}).get("hardware")
    hw = hardware if isinstance(hardware, dict) else {}
    items = power_items(data) + disagreement_items(data) + [
        interval_item(data), *dev_example_items(data),
        f"Drift compares n = {', '.join(map(str, n_samples)) or '–'} dev samples per task; sample-level uncertainty is "
        "the bootstrap over samples (per run, below the drift tables) and is part of the hierarchical interval.",
        f"Base model: {cfg.get('model')}; training settings: {cfg.get('train')}. Results for other models may differ.",
        f"Hardware: {hw.get('processor', '?')}, {hw.get('cpu_count', '?')} CPUs"
        + (f", {hw['cuda_device']}" if hw.get("cuda_device") else ", no GPU") + ".",
        "Reference-study columns (marked *) come from TinyLlama-1.1B on an L4 GPU: other model, other data sizes.",
    ]
    items += [f"{task}: {d.n_samples_note}." for task, d in data.drift.items() if d.n_samples_note]
    items += [f"No drift analysis for {task}: {why}" for task, why in data.drift_skipped.items() if task not in data.drift]
    lens_names = {"weights": "weight lens", "forgetting": "forgetting lens", "probes": "probe retention"}
    for lens, skipped in data.lens_skipped.items():
        items += [f"No {lens_names[lens]} for {task}: {why}" for task, why in skipped.items() if task not in data.lens(lens)]
    items += learning_items(data) + noise_items(data)
    failed = [r.folder for r in data.runs if not r.record.ok]
    if failed:
        items.append(f"Failed units (excluded from the statistics): {', '.join(failed)}.")
    return "## Limitations\n\n" + "\n".join(f"- {i}" for i in items)


def spread_text(floor: NoiseFloor | None) -> str:
    """The noise floor of one method: sd over seeds with its interval."""
    if not floor:
        return "–"
    lo, hi = floor.sd_ci
    return f"{format_number(floor.sd, 4)} [{format_number(lo, 4)}, {format_number(hi, 4)}]"
