"""The study's verdicts as one declared family: Holm over hypotheses × tasks, raw and adjusted p side by side."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from statsmodels.stats.multitest import multipletests

from lorascope.drift.analysis import RunDrift
from lorascope.drift.compare import compare_methods
from lorascope.drift.config import DriftConfig
from lorascope.stats import HypothesisFamily, apply_family, correct_study, h1a_verdict, h1b_verdict
from lorascope.stats.verdict import ROBUST_TEXT, Verdict

# Per-seed drifts and dev accuracies of docs/results/smollm2-2ep-lr5e-5 (SmolLM2-135M, SST-2, 8 seeds).
SEEDS = [7, 11, 23, 42, 99, 123, 1337, 2024]
DRIFT_LORA = [0.014848, 0.010753, 0.004375, 0.008964, 0.084913, 0.037828, 0.014449, 0.005457]
DRIFT_FULL = [0.009857, 0.023462, 0.011055, 0.056848, 0.108677, 0.051903, 0.035087, 0.011811]
DRIFT_DB_LORA = [0.015555, 0.011236, 0.004595, 0.009409, 0.085347, 0.038123, 0.014460, 0.005627]
DRIFT_DB_FULL = [0.010589, 0.024312, 0.011807, 0.060273, 0.111267, 0.052426, 0.036126, 0.011995]
ACC_LORA = [0.81, 0.785, 0.765, 0.795, 0.775, 0.80, 0.79, 0.795]
ACC_FULL = [0.81, 0.805, 0.825, 0.77, 0.825, 0.785, 0.815, 0.77]
# The five verdicts' raw t p-values as that study published them, each then read at α = 0.05 alone.
PUBLISHED_P = {"h1a": 0.06313004834495801, "h1b": 0.05723970261252436, "h1b_debiased": 0.05325887457417389,
               "lower": 0.012239869265099894, "lower_debiased": 0.012534994594342637}


def _runs(method, drifts, drifts_db, accs):
    return [RunDrift(method=method, seed=s, metric=a, layers=[{"drift": d}], mean_drift=d, mean_drift_ci=(d, d),
                     mean_drift_debiased=db, mean_drift_debiased_ci=(db, db), mean_cosine=0.9, n_samples=200)
            for s, d, db, a in zip(SEEDS, drifts, drifts_db, accs)]


def published_comparison(**kw):
    return compare_methods(_runs("lora", DRIFT_LORA, DRIFT_DB_LORA, ACC_LORA),
                           _runs("full", DRIFT_FULL, DRIFT_DB_FULL, ACC_FULL), **kw)


# ---------------------------------------------------------------- the declaration


def test_default_family_declares_five_hypotheses_with_h1a_and_h1b_primary():
    fam = HypothesisFamily()
    assert fam.hypotheses == ["h1a", "h1b", "h1b_debiased", "lower", "lower_debiased"]
    assert fam.primary == ["h1a", "h1b"] and fam.correction == "holm"
    assert HypothesisFamily().hypotheses is not fam.hypotheses  # no shared mutable default


@pytest.mark.parametrize(("kw", "match"), [
    ({"hypotheses": ["h1a"], "primary": ["h1b"]}, "not among the declared"),
    ({"hypotheses": ["h1a", "h1a"], "primary": ["h1a"]}, "distinct"),
    ({"hypotheses": [], "primary": []}, "at least one"),
    ({"hypotheses": ["h2"]}, "h1a"),
    ({"correction": "fdr"}, "holm"),
])
def test_family_declaration_is_checked(kw, match):
    with pytest.raises(ValidationError, match=match):
        HypothesisFamily(**kw)


def test_a_study_declares_its_family_in_the_drift_settings():
    cfg = DriftConfig(family={"hypotheses": ["h1a", "lower"], "primary": ["lower"]})
    assert cfg.family.hypotheses == ["h1a", "lower"] and cfg.family.primary == ["lower"]
    assert DriftConfig().family == HypothesisFamily()
    # The family travels with the settings a study passes to each task's analysis.
    assert DriftConfig(**cfg.model_dump()).family == cfg.family


# ---------------------------------------------------------------- the published study, corrected


@pytest.mark.slow
def test_a_family_where_the_uncorrected_reading_passes_and_the_corrected_one_does_not():
    comp = published_comparison()
    lower = comp["verdicts"]["lower"]
    raw = {k: v["p_value"] for k, v in comp["verdicts"].items()}
    # Read alone at α = 0.05, "LoRA drifts less" would be supported by both tests...
    assert lower["p_value"] < 0.05 and lower["secondary"]["p_value"] < 0.05
    # ...but it is one of five verdicts of this study: Holm over all five does not support it.
    _, expected, _, _ = multipletests(list(raw.values()), method="holm")
    assert [v["p_adjusted"] for v in comp["verdicts"].values()] == pytest.approx(expected, rel=1e-12)
    assert lower["p_adjusted"] > 0.05 and lower["status"] == "inconclusive"
    assert lower["correction"] == "holm" and lower["n_comparisons"] == 5 and lower["family"]["size"] == 5
    assert lower["family"]["members"] == ["h1a", "h1b", "h1b_debiased", "lower", "lower_debiased"]
    assert lower["corrected_alpha"] == pytest.approx(0.01)
    # The next study is planned at the family's strictest level: the exact test needs 2^-n ≤ 0.01, 7 pairs.
    assert lower["seeds_needed"]["exact_floor"] == 7
    assert lower["seeds_needed"]["t_range"][0] <= lower["seeds_needed"]["t"]
    assert "Holm-adjusted over 5 verdicts" in lower["message"] and "> family-wise α 0.05" in lower["message"]
    assert comp["family"] == {"method": "holm", "size": 5, "hypotheses": list(raw), "primary": ["h1a", "h1b"],
                              "n_tasks": 1, "alpha": 0.05, "complete": True}
    assert [v["primary_hypothesis"] for v in comp["verdicts"].values()] == [True, True, False, False, False]


@pytest.mark.slow
def test_the_published_records_corrected_as_a_study():
    records = {k: {"hypothesis": k, "claim": "c", "status": "supported" if p < 0.05 else "inconclusive", "estimate": 0.4,
                   "ci_low": 0.1, "ci_high": None, "ci_method": "t", "confidence": 0.95, "n": 8, "p_value": p,
                   "test": {"test": "paired t-test (df=7)", "n": 8, "statistic": 2.0, "p_value": p, "alternative": "greater"},
                   "alpha": 0.05, "n_comparisons": 1, "corrected_alpha": 0.05, "message": "", "reverse_p_value": 1 - p,
                   "decisive": False, "seeds_needed": {"t": 17, "exact_floor": 5, "power": 0.8, "effect_size_dz": 0.64,
                                                        "note": ""}}
               for k, p in PUBLISHED_P.items()}
    out = correct_study({"sst2": {"verdicts": records, "n_pairs": 8}})["sst2"]
    lower = out["verdicts"]["lower"]
    assert lower["p_adjusted"] == pytest.approx(5 * PUBLISHED_P["lower"]) == pytest.approx(0.0612, abs=1e-4)
    assert records["lower"]["status"] == "supported" and lower["status"] == "inconclusive"
    assert out["n_pairs"] == 8 and out["family"]["size"] == 5 and out["family"]["complete"]
    assert lower["seeds_needed"]["exact_floor"] == 7 and lower["seeds_needed"]["t"] > 17  # re-planned at 0.05 / 5
    assert math.isnan(Verdict.from_dict(records["h1b"]).ci_high)  # None (unbounded) reads back as NaN
    json.dumps(out)


@pytest.mark.slow
def test_declaring_fewer_hypotheses_makes_a_smaller_family():
    comp = published_comparison(family=HypothesisFamily(hypotheses=["h1a", "lower"], primary=["lower"]))
    assert list(comp["verdicts"]) == ["h1a", "lower"] and comp["family"]["size"] == 2
    lower = comp["verdicts"]["lower"]
    assert lower["p_adjusted"] == pytest.approx(2 * lower["p_value"])  # Holm's first step with m = 2
    assert lower["status"] == "supported" and lower["primary_hypothesis"]


# ---------------------------------------------------------------- several tasks


@pytest.mark.slow
def test_tasks_are_provisional_alone_and_corrected_together_by_the_study():
    tasks = {"sst2": published_comparison(n_tasks=2), "mrpc": published_comparison(n_tasks=2, seed=1)}
    alone = tasks["sst2"]["verdicts"]["lower"]
    assert alone["n_comparisons"] == 10 and not alone["family"]["complete"] and not tasks["sst2"]["family"]["complete"]
    # Holm within the task at α/2 (Bonferroni over the 2 tasks): valid on its own, never stronger than Holm over all 10.
    within = multipletests([v["p_value"] for v in tasks["sst2"]["verdicts"].values()], method="holm")[1]
    assert alone["p_adjusted"] == pytest.approx(min(1.0, 2 * within[3]))
    study = correct_study(tasks)
    together = study["sst2"]["verdicts"]["lower"]
    raw = [v["p_value"] for t in ("sst2", "mrpc") for v in tasks[t]["verdicts"].values()]
    assert together["p_adjusted"] == pytest.approx(multipletests(raw, method="holm")[1][3])
    assert together["p_adjusted"] <= alone["p_adjusted"]
    assert together["family"]["members"][:2] == ["sst2/h1a", "sst2/h1b"] and together["family"]["complete"]
    assert study["mrpc"]["family"]["size"] == 10


@pytest.mark.slow
def test_a_verdict_that_could_not_be_computed_still_counts_in_the_family():
    lo = np.array([0.010, 0.011, 0.009, 0.012, 0.010])
    v = h1b_verdict(0.5 * lo * [1.0, 1.02, 0.98, 1.01, 0.99], lo, min_reduction=0.0)
    alone = apply_family({"a": v})["a"]
    with_missing = apply_family({"a": v, "b": None, "c": None})
    assert set(with_missing) == {"a"} and with_missing["a"].n_comparisons == 3
    assert with_missing["a"].p_adjusted == pytest.approx(min(1.0, 3 * alone.p_value))
    assert alone.correction == "none" and alone.p_adjusted == alone.p_value


@pytest.mark.slow
def test_undefined_p_counts_as_one_and_stays_undefined():
    acc = np.array([0.8, 0.8, 0.8, 0.8])
    undefined = h1a_verdict(acc, acc)  # identical metrics: the t statistic is undefined
    assert math.isnan(undefined.p_value)
    lo = np.array([0.010, 0.011, 0.009, 0.012])
    fine = h1b_verdict(0.5 * lo * [1.0, 1.02, 0.98, 1.01], lo, min_reduction=0.0)
    out = apply_family({"h1a": undefined, "lower": fine})
    assert math.isnan(out["h1a"].p_adjusted) and out["h1a"].status == "inconclusive"
    assert out["lower"].p_adjusted == pytest.approx(2 * fine.p_value)  # the NaN sorts last as p = 1


@pytest.mark.slow
def test_each_test_is_adjusted_within_its_own_family_and_the_floor_uses_alpha_over_m():
    lo = np.array([0.010, 0.011, 0.009, 0.012, 0.010])
    v = h1b_verdict(0.5 * lo * [1.0, 1.02, 0.98, 1.01, 0.99], lo, min_reduction=0.0)
    assert v.secondary_status == "supported"  # 5 pairs: exact floor 2^-5 = 0.031 ≤ 0.05
    two = apply_family({"a": v, "b": v})
    assert two["a"].secondary_p_adjusted == pytest.approx(2 * v.secondary.p_value)
    assert two["a"].secondary_status == "underpowered"  # 0.031 > 0.05 / 2: no outcome could pass Holm's first step
    assert not two["a"].tests_agree and not two["a"].robust_to_normality
    bonf = apply_family({"a": v, "b": v}, correction="bonferroni")
    assert bonf["a"].correction == "bonferroni" and bonf["a"].p_adjusted == pytest.approx(2 * v.p_value)


# ---------------------------------------------------------------- what agreement of the two tests means


def test_agreement_is_named_robustness_to_normality_not_replication():
    lo = np.array([0.30, 0.28, 0.33, 0.31, 0.29, 0.32, 0.30, 0.27])
    v = h1b_verdict(0.5 * lo * [1.02, 0.97, 1.01, 0.99, 1.03, 0.98, 1.0, 1.0], lo)
    assert v.robust_to_normality
    d = v.to_dict()
    assert d["robust_to_normality"] is True and "decisive" not in d
    assert ROBUST_TEXT in v.message and "not a replication" in v.message
    back = Verdict.from_dict(json.loads(json.dumps(d)))
    assert back == v


@pytest.mark.slow
def test_a_task_without_a_comparison_still_counts_in_the_declared_family():
    fam = HypothesisFamily(hypotheses=["h1b", "lower"], primary=["lower"])
    sst2 = published_comparison(family=fam)
    study = correct_study({"sst2": sst2}, family=fam, tasks=["sst2", "rte"])  # rte: every run failed
    lower = study["sst2"]["verdicts"]["lower"]
    assert lower["n_comparisons"] == 4 and lower["family"]["members"][-1] == "rte/lower"
    assert lower["p_adjusted"] == pytest.approx(multipletests([sst2["verdicts"]["h1b"]["p_value"], lower["p_value"], 1, 1],
                                                              method="holm")[1][1])
    assert set(study) == {"sst2"} and study["sst2"]["family"]["primary"] == ["lower"]
    assert lower["primary_hypothesis"] and not study["sst2"]["verdicts"]["h1b"]["primary_hypothesis"]
