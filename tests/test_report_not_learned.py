"""The report of a study whose models did not learn reads right: one statement per task, no p-value
or effect size offered as a finding, below-majority runs called below majority, MCC on its own scale."""

import re

import numpy as np
import pytest

from lorascope.drift.analysis import seed_noise_floor, summarise_method
from lorascope.drift.compare import compare_methods
from lorascope.report.answers import answers, verdict_table
from lorascope.report.build import markdown_to_html
from lorascope.report.limitations import limitations
from lorascope.report.markdown import render
from tests.conftest import baselines_record
from tests.helpers import prose_faults, study_records, weight_run, weight_scope
from tests.test_report import _run, _values, synthetic_study

# An adversarial pair task scored by Matthews correlation: LoRA learned something misleading (MCC
# about -0.215, below the majority baseline's 0), full fine-tuning predicts one label everywhere.
LORA_MCC = (-0.19, -0.23, -0.225)
FULL_MCC = (0.0, 0.0, 0.0)


def _learning(mcc: float, share: float) -> dict:
    return {"learned": False, "reasons": ["at majority level"], "majority_baseline": 0.0, "predicted_share": share}


def not_learned_study(n_seeds: int = 3) -> dict:
    """sst2 learned (accuracy, from the synthetic study); hans, scored by MCC, did not. Their drift
    differs by much more than the seed spread, so hans's paired tests come out "significant"."""
    data = synthetic_study(n_seeds, tasks=("sst2",), seed=3)
    rng = np.random.default_rng(5)
    lora_mcc, full_mcc = LORA_MCC[:n_seeds], FULL_MCC[:n_seeds]
    import dataclasses

    lora = [dataclasses.replace(_run("lora", s, float(v), lora_mcc[s]), learning=_learning(lora_mcc[s], 0.7))
            for s, v in enumerate(_values(0.020, 0.002, n_seeds, rng))]
    full = [dataclasses.replace(_run("full", s, float(v), full_mcc[s]), learning=_learning(full_mcc[s], 1.0))
            for s, v in enumerate(_values(0.090, 0.004, n_seeds, rng))]
    data["drift"]["hans"] = {
        "task": "hans", "base": "m", "pooling": "mean", "n_layers": 1, "n_samples": 300, "controls": [],
        "runs": [r.to_dict() for r in lora + full],
        "methods": {"lora": summarise_method(lora), "full": summarise_method(full)},
        "noise_floor": {"lora": seed_noise_floor(lora), "full": seed_noise_floor(full)},
        "comparison": compare_methods(lora, full, n_tasks=2),
    }
    data["runs"] += [{"task": "hans", "method": r.method, "seed": r.seed, "status": "ok", "main_metric": "matthews",
                      "dev": {"matthews": r.metric}, "n_eval": 300, "learning_check": r.learning,
                      "folder": f"hans-{r.method}-s{r.seed}"} for r in lora + full]
    data["baselines"] = baselines_record({**{b.task: b.majority for b in data["baselines"].baselines}, "hans": {"matthews": 0.0}})
    data["config"]["tasks"] = ["sst2", "hans"]
    tests = {"paired_t": {"test": "paired t-test (df=2)", "n": n_seeds, "statistic": 8.5, "p_value": 0.00417,
                          "alternative": "two-sided"},
             "sign_flip": {"test": "sign-flip permutation (exact)", "n": n_seeds, "statistic": 0.07, "p_value": 0.25,
                           "alternative": "two-sided", "min_attainable_p": 0.25}}
    measures = {key: {"lora_mean": lora_mean, "lora_sd": lora_mean / 8, "lora_n": n_seeds, "full_mean": full_mean,
                      "full_sd": full_mean / 10, "full_n": n_seeds, **tests}
                for key, lora_mean, full_mean in (("relative_update", 0.08, 0.01), ("stable_rank", 1.5, 3.0),
                                                  ("entropy_rank", 4.0, 6.0), ("intruders", 1.4, 0.0))}
    # Each run at its method's means (the weight lens's measures over the matrices LoRA adapts).
    matrices = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight"]
    runs = [weight_run("hans", m, s, matrices, whole=15, intruders_by_epsilon={"0.5": 1},
                       **{key: entry[f"{m}_mean"] for key, entry in measures.items()})
            for m in ("lora", "full") for s in range(n_seeds)]
    data["weights"] = {"hans": {"config": {"top_k": 10, "epsilon": 0.5}, "matrices": matrices,
                                "matrices_by_variant": {"lora": matrices},
                                "scope": weight_scope(matrices, 15, ["model.embed_tokens.weight"]),
                                "matched_update": {"relative_update": 0.028, "labels": ["lora", "full"],
                                                   "runs": 2 * n_seeds},
                                "runs": runs,
                                "comparison": {"primary": "lora", "reference": "full", "seeds": list(range(n_seeds)),
                                               "measures": measures, "variants": {}}}}
    return data


@pytest.fixture(scope="module")
def data() -> dict:
    return not_learned_study()


@pytest.fixture(scope="module")
def study(data):
    return study_records(data)


def _hans_tests(data: dict) -> tuple[float, float, float]:
    c = data["drift"]["hans"]["comparison"]
    return c["paired_t"]["p_value"], c["sign_flip"]["p_value"], c["cohens_d"]


@pytest.mark.slow
def test_the_fixture_is_the_reported_case(data):
    # The models did not learn, yet their drift difference looks decisive: the case the report must not present.
    p_t, _, d = _hans_tests(data)
    assert p_t < 0.05 and abs(d) > 3
    assert "not_interpretable" in data["drift"]["hans"]["comparison"]


def test_one_statement_per_task_and_no_rows_for_it(study):
    table = verdict_table(study)
    assert "| sst2 | LoRA drifts less |" in table  # the task that learned keeps its rows
    assert "| hans" not in table
    assert table.count("**hans**: no verdicts — the models did not learn the task") == 1
    text = answers(study)
    [line] = [ln for ln in text.splitlines() if "**hans**" in ln]
    assert "no answer — the models did not learn the task" in line
    assert "full fine-tuning seeds 0, 1, 2 predict one label for every dev example" in line


def test_below_majority_is_called_below_and_mcc_stays_on_its_scale(study):
    mean = float(np.mean(LORA_MCC))
    text = answers(study)
    assert f"LoRA's mean dev MCC over 3 seeds, {mean:.3f}, is below the majority baseline (0.000) by {-mean:.3f}" in text
    md = render(study, {})
    # Full fine-tuning sits exactly at the baseline: said so, not "below".
    assert "full fine-tuning's mean dev MCC over 3 seeds, 0.000, is at the majority baseline (0.000)" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| hans | lora | matthews |"))
    assert f"| {mean:.3f} ± " in row and f"| {mean:+.3f} (below majority) |" in row and "%" not in row
    # Never as a percentage: neither "-21.5" nor "21.5%".
    assert not re.search(r"-?21\.\d%?", md)


def test_no_p_value_or_effect_size_of_the_untrained_task_is_offered(data, study):
    md = render(study, {})
    p_t, p_exact, d = _hans_tests(data)
    for shown in (f"{p_t:.3g}", f"{p_t:.4g}", f"{d:.2f}", "0.00417"):
        assert shown not in md, shown
    hans_lines = [ln for ln in md.splitlines() if ln.startswith("| hans")]
    assert hans_lines and not any(re.search(r"p ?=", ln) for ln in hans_lines)
    assert "relative update ‖ΔW‖/‖W₀‖ | 0.0800 ± 0.0100 (n=3) | 0.0100 ± 0.0010 (n=3) | not reported (did not learn)" in md


@pytest.mark.slow
def test_limitations_say_why_there_is_no_test(data, study):
    text = limitations(study)
    assert "hans: 3 seed pairs, but no test or effect size is reported: the models did not learn the task" in text
    assert "too few for any test" not in text
    # The task that learned keeps its power statement. Its family, once the study adjusts every task
    # together, spans both tasks: hans's declared verdicts, not computed, count as p = 1.
    from lorascope.stats.family import correct_study

    studied = correct_study({task: d["comparison"] for task, d in data["drift"].items()})
    text = limitations(study_records({**data, "drift": {task: {**d, "comparison": studied[task]}
                                                        for task, d in data["drift"].items()}}))
    assert ("sst2: 3 seed pairs; a family of 10 verdicts (5 hypotheses × 2 tasks) adjusted together by Holm at "
            "family-wise α = 0.05, whose strictest level (Holm's first step) is α/10 = 0.005") in text
    assert "exact sign-flip test needs no such assumption and cannot reach it whatever the data: its smallest p is " \
           "0.125 one-sided (0.25 two-sided), and 8 seed pairs are the minimum." in text


def test_the_html_says_the_same(study, tmp_path):
    html = markdown_to_html(render(study, {}), tmp_path)
    assert "no verdicts — the models did not learn the task" in html
    assert "is below the majority baseline (0.000) by 0.215" in html
    assert "not reported (did not learn)" in html


def test_one_seed_pair_says_no_test_is_possible():
    md = render(study_records(synthetic_study(1)), {})
    assert "sst2: one seed pair allows no test across seeds" in md
    assert "sst2: 1 seed pair — too few for any test across seeds" in md
    assert "deltas has 1 value" not in md


@pytest.mark.slow
def test_a_real_study_whose_models_did_not_learn_reads_right(glue_dir, tmp_path):
    """tiny-llama on 24 MRPC examples for one epoch at lr 1e-4: both methods end below the majority
    baseline's F1 on the 16 dev rows. The whole report, built from the saved artifacts, must say so
    once per place and offer none of the comparison's tests as a finding."""
    import yaml

    from lorascope.study import load_study, run_study

    cfg = {"name": "untrained", "model": "tiny-llama", "tasks": ["mrpc"], "methods": ["lora", "full"], "seeds": [1, 2],
           "out": str(tmp_path / "study"), "stages": ["baselines", "train", "drift", "weights", "report"],
           "train": {"train_limit": 24, "eval_limit": 16, "epochs": 1, "batch_size": 8, "max_length": 48, "lr": 1e-4},
           "drift": {"n_samples": 32, "max_length": 48, "bootstrap": 100}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    out = run_study(load_study(tmp_path / "study.yaml"))
    md = (out / "report" / "report.md").read_text()
    html = (out / "report" / "report.html").read_text()
    assert prose_faults(md) == []
    verdicts = md.split("## Verdicts", 1)[1].split("## ", 1)[0]
    assert verdicts.strip() == ("- **mrpc**: no verdicts — the models did not learn the task (why: see Answers); its "
                                "p-values and effect sizes are not reported.")
    assert "**mrpc** (2 seed pairs): no answer — the models did not learn the task: LoRA's mean dev F1 over 2 seeds" in md
    assert re.search(r"is below the majority baseline \(66\.7%\) by \d+\.\d points", md)
    assert "(below majority)" in md
    # No test result anywhere: the only task did not learn.
    assert not re.search(r"\bp ?= ?\d", md) and "Cohen" not in md
    assert "too few for any test" not in md
    assert "no verdicts — the models did not learn the task" in html and "not reported (did not learn)" in html


def test_metrics_are_written_on_their_own_scale():
    from lorascope.metrics import format_count, format_metric, format_metric_difference, versus_majority
    from lorascope.report.answers import _estimate_text

    assert format_metric("accuracy", 0.912, 0.0114) == "91.2 ± 1.1%"
    assert format_metric("matthews", 0.164, 0.02) == "0.164 ± 0.020"
    assert format_metric("matthews", None) == "–" and format_metric("f1", float("nan")) == "–"
    assert format_metric_difference("f1", -0.056) == "-5.6 points"
    assert format_metric_difference("matthews", 0.2) == "+0.200"
    assert format_count(12.0) == "12"  # a support read back through JSON as a float
    assert versus_majority("matthews", -0.215, 0.0, 0.02) == "below the majority baseline (0.000) by 0.215"
    assert versus_majority("accuracy", 0.536, 0.53, 0.02) == (
        "0.6 points above the majority baseline (53.0%), less than the 2.0-point margin")
    assert versus_majority("accuracy", 0.60, 0.53, 0.02) == "7.0 points above the majority baseline (53.0%)"
    from lorascope.drift.record import StoredVerdict

    h1a = StoredVerdict(
        hypothesis="H1a", claim="LoRA's metric is at most 0.03 below full fine-tuning's (non-inferiority)",
        status="inconclusive", estimate=-0.0125, ci_low=-0.061, ci_high=0.036, ci_method="t", confidence=0.95, n=3,
        p_value=0.19, test={"test": "paired t-test (df=2)", "n": 3, "statistic": 1.13, "p_value": 0.19,
                            "alternative": "greater"},
        alpha=0.05, n_comparisons=5, corrected_alpha=0.01,
        message="H1a inconclusive: mean LoRA − full FT = -0.0125, margin −0.03")
    assert _estimate_text(h1a, "matthews") == "LoRA − full = -0.013" and _estimate_text(h1a, "f1") == (
        "LoRA − full = -1.2 points")
