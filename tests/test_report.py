"""The report's sentences follow its numbers: power statements, noise caveats, verdict wording."""

import numpy as np
import pytest

from lorascope.drift.analysis import RunDrift, seed_noise_floor, summarise_method
from lorascope.drift.compare import compare_methods
from lorascope.report.answers import answers, verdict_table
from lorascope.report.limitations import limitations, noise_items
from lorascope.report.markdown import render
from tests.conftest import baselines_record
from tests.helpers import small_drift_record, small_weights_record, study_records


def _values(mean: float, sd: float, n: int, rng) -> np.ndarray:
    """n values with exactly this sample mean and sd."""
    z = rng.normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


def _run(method: str, seed: int, drift: float, metric: float) -> RunDrift:
    layers = [{"layer": 0, "cka": 1 - drift, "cka_debiased": 1 - drift, "cosine": 0.9, "drift": drift,
               "drift_debiased": drift, "ci_low": drift - 0.01, "ci_high": drift + 0.01}]
    return RunDrift(method=method, seed=seed, metric=metric, layers=layers, mean_drift=drift,
                    mean_drift_ci=(drift - 0.01, drift + 0.01), mean_drift_debiased=drift,
                    mean_drift_debiased_ci=(drift - 0.01, drift + 0.01), mean_cosine=0.9, n_samples=300,
                    thirds={"early": drift})


def synthetic_study(n_seeds: int, tasks=("sst2",), full=(0.1515, 0.0013), lora=(0.0289, 0.0003), seed=0) -> dict:
    rng = np.random.default_rng(seed)
    drift, runs = {}, []
    for task in tasks:
        by_method = {}
        for method, (mu, sd) in (("lora", lora), ("full", full)):
            values = _values(mu, sd, n_seeds, rng)
            by_method[method] = [_run(method, s, float(v), 0.80 + 0.002 * s) for s, v in enumerate(values)]
            runs += [{"task": task, "method": method, "seed": s, "status": "ok", "main_metric": "accuracy",
                      "dev": {"accuracy": 0.80 + 0.002 * s}, "n_eval": 300, "folder": f"{task}-{method}-s{s}"}
                     for s in range(n_seeds)]
        drift[task] = {
            "task": task, "base": "m", "pooling": "mean", "n_layers": len(by_method["lora"][0].layers),
            "n_samples": 300, "controls": [], "runs": [r.to_dict() for rs in by_method.values() for r in rs],
            "methods": {m: summarise_method(rs) for m, rs in by_method.items()},
            "noise_floor": {m: seed_noise_floor(rs) for m, rs in by_method.items()},
            "comparison": compare_methods(by_method["lora"], by_method["full"], n_tasks=len(tasks)),
        }
    return {"drift": drift, "baselines": baselines_record({t: {"accuracy": 0.51} for t in tasks}), "runs": runs,
            "config": {"name": "synthetic", "model": "m", "seeds": list(range(n_seeds)), "tasks": list(tasks)},
            "bench": None, "provenance": None, "timings": {}, "study": "synthetic"}


@pytest.mark.slow
def test_an_81_percent_reduction_is_not_called_noise():
    data = synthetic_study(3)
    records = study_records(data)
    assert noise_items(records) == []
    assert "could produce this difference" not in limitations(records)
    caveat = data["drift"]["sst2"]["comparison"]["noise_caveat"]
    assert not caveat["applies"] and caveat["text"] in render(records, {})  # shown under the comparison, verbatim
    floor = data["drift"]["sst2"]["noise_floor"]
    assert floor["full"]["sd"] == pytest.approx(0.0013) and floor["lora"]["sd"] == pytest.approx(0.0003)


@pytest.mark.slow
def test_a_difference_inside_the_seed_spread_is_flagged():
    data = synthetic_study(5, full=(0.100, 0.02), lora=(0.095, 0.02))
    caveat = data["drift"]["sst2"]["comparison"]["noise_caveat"]
    assert caveat["applies"]
    records = study_records(data)
    [item] = noise_items(records)
    assert item == f"sst2: {caveat['text']}." and "which includes 1: the training seed alone could produce" in item
    assert f"sst2: could be seed noise — {caveat['text']}." in answers(records)


# The family is 5 hypotheses × tasks, adjusted by Holm: the exact test's smallest one-sided p, 2^-n,
# must reach 0.05 / (5 · tasks) before it can decide anything (0.01 for one task, 0.003333 for three).
@pytest.mark.slow
@pytest.mark.parametrize(("n_seeds", "tasks", "reachable", "smallest", "floor"), [
    (3, ("sst2", "mrpc", "rte"), False, "0.125", 9),
    (5, ("sst2", "mrpc", "rte"), False, "0.0312", 9),
    (5, ("sst2",), False, "0.0312", 7),
    (8, ("sst2",), True, "0.00391", 7),
    (8, ("sst2", "mrpc", "rte"), False, "0.00391", 9),
    (9, ("sst2", "mrpc", "rte"), True, "0.00195", 9),
])
def test_limitations_say_which_tests_can_reach_alpha(n_seeds, tasks, reachable, smallest, floor):
    from lorascope.stats.family import correct_study

    data = synthetic_study(n_seeds, tasks)
    studied = correct_study({t: d["comparison"] for t, d in data["drift"].items()})
    for task, comparison in studied.items():
        data["drift"][task]["comparison"] = comparison
    text = limitations(study_records(data))
    assert f"{n_seeds} seed pairs" in text and f"its smallest p is {smallest} one-sided" in text
    assert ("can reach it" in text) == reachable and ("cannot reach it whatever the data" in text) == (not reachable)
    m = 5 * len(tasks)
    assert (f"a family of {m} verdicts (5 hypotheses × {len(tasks)} task{'s' if len(tasks) > 1 else ''}) adjusted "
            f"together by Holm at family-wise α = 0.05, whose strictest level (Holm's first step) is α/{m} = "
            f"{0.05 / m:.4g}") in text
    assert "Bonferroni" not in text
    if not reachable:
        assert f"and {floor} seed pairs are the minimum" in text
    # the plain seed bootstrap's coverage at this n (a simulation finds 73%, 83%, 89%, 90%; see test_stats_coverage)
    coverage = {3: "75%", 5: "85%", 8: "89%", 9: "90%"}[n_seeds]
    assert f"its nominal 95% interval would cover about {coverage} at {n_seeds} seed pairs." in text


@pytest.mark.slow
def test_a_task_analysed_alone_says_its_family_is_not_yet_the_studys():
    # drift.json written by one task's analysis: Holm within the task, Bonferroni over the study's tasks.
    text = limitations(study_records(synthetic_study(3, ("sst2", "mrpc", "rte"))))
    assert "a family of 15 verdicts (5 hypotheses × 3 tasks) adjusted by Holm within each task and Bonferroni over " \
           "tasks at family-wise α = 0.05" in text


@pytest.mark.slow
def test_eight_seeds_decide_and_the_answer_says_so():
    data = synthetic_study(8)
    verdicts = data["drift"]["sst2"]["comparison"]["verdicts"]
    assert verdicts["lower"]["robust_to_normality"] and verdicts["h1b"]["robust_to_normality"]
    records = study_records(data)
    text = answers(records)
    h1b = verdicts["h1b"]
    assert (f"supported by both the paired t-test (p = {h1b['p_value']:.3g}, Holm-adjusted {h1b['p_adjusted']:.3g}) "
            f"and the exact sign-flip test (p = 0.00391, Holm-adjusted {h1b['secondary_p_adjusted']:.3g}); the decision "
            "is robust to the normality assumption: the t-test and the exact sign-flip test agree on the same seeds "
            "(not a replication)") in text
    table = verdict_table(records)
    assert "| sst2 | LoRA drifts less | **supported** |" in table and "**supported** ⚠" not in table
    assert "decisive" not in render(records, {}).lower()


@pytest.mark.slow
def test_three_seeds_disagreement_is_marked_not_hidden():
    records = study_records(synthetic_study(3))
    table = verdict_table(records)
    assert "**supported** ⚠" in table
    assert "not confirmed" in answers(records)
    assert "not confirmed by both" in limitations(records)


@pytest.mark.slow
def test_h1a_for_a_lora_20_points_better_is_supported():
    data = synthetic_study(8)
    comp = data["drift"]["sst2"]["comparison"]
    from lorascope.stats import h1a_verdict

    full = np.array([0.55, 0.52, 0.60, 0.47, 0.58, 0.50, 0.53, 0.56])
    lora = full + 0.20 + np.linspace(-0.01, 0.01, 8)
    comp["verdicts"]["h1a"] = h1a_verdict(lora, full).to_dict()
    assert comp["verdicts"]["h1a"]["status"] == "supported"
    assert "LoRA − full = +20.0 points" in answers(study_records(data))


@pytest.mark.slow
def test_whole_document_renders_from_numbers():
    md = render(study_records(synthetic_study(4)), {})
    for heading in ("## Answers", "## Verdicts", "## Representation drift", "## Limitations"):
        assert heading in md
    import re

    assert not re.search(r"\bnan\b", md, re.IGNORECASE)


@pytest.mark.slow
def test_runs_that_did_not_learn_make_the_verdicts_not_interpretable():
    import dataclasses

    data = synthetic_study(8)
    rng = np.random.default_rng(1)
    lora = [_run("lora", s, float(v), 0.5) for s, v in enumerate(_values(0.03, 0.001, 8, rng))]
    full = [_run("full", s, float(v), 0.5) for s, v in enumerate(_values(0.15, 0.001, 8, rng))]
    def check(metric: float, share: float = 0.6) -> dict:
        return {"learned": metric >= 0.52, "majority_baseline": 0.5, "predicted_share": share}

    lora = [dataclasses.replace(r, metric=0.8, learning=check(0.8)) for r in lora]
    full = [dataclasses.replace(r, metric=0.8, learning=check(0.8)) for r in full]
    # One seed at majority level among learning ones is listed, not fatal.
    full[3] = dataclasses.replace(full[3], metric=0.5, learning=check(0.5))
    assert compare_methods(lora, full)["runs_not_learned"] == ["full seed 3"]
    assert compare_methods(lora, full)["verdicts"]["lower"]["status"] == "supported"
    # One run that predicts a single label for every example is fatal.
    full[3] = dataclasses.replace(full[3], learning=check(0.5, share=1.0))
    comparison = compare_methods(lora, full)
    assert "full seed 3 predicts one label for every dev example" in comparison["not_interpretable"]
    assert all(v.get("not_interpretable") and "status" not in v for v in comparison["verdicts"].values())
    data["drift"]["sst2"]["comparison"] = comparison
    records = study_records(data)
    # These runs carry no learning check of their own: the report states drift.json's reason.
    assert "no answer — the models did not learn the task: full seed 3 predicts one label" in answers(records)
    # One statement for the task, not one row per verdict repeating it.
    table = verdict_table(records)
    assert "| sst2 |" not in table and table.count("the models did not learn the task") == 1
    # A method whose mean is at majority level is fatal too.
    lora = [dataclasses.replace(r, metric=0.51, learning=check(0.51)) for r in lora]
    full[3] = dataclasses.replace(full[3], learning=check(0.5))
    assert ("LoRA's mean dev metric 51.0% is 1.0 points above the majority baseline (50.0%), less than the 2.0-point "
            "margin") in (
        compare_methods(lora, full)["not_interpretable"])


@pytest.mark.slow
def test_lora_drifting_more_is_said_in_words_and_each_p_is_the_one_its_status_rests_on():
    data = synthetic_study(8, full=(0.020, 0.002), lora=(0.050, 0.040))
    text = answers(study_records(data))
    more = -data["drift"]["sst2"]["comparison"]["reduction_percent"]
    assert f"drifted {more:.1f}% more than full fine-tuning's" in text and "% less than" not in text.split("\n")[4]
    for line in text.splitlines():
        if "rejected" in line:
            assert "for the opposite claim" in line, line
    # The tests disagree and the exact one rejects: the p quoted for it is the opposite claim's, not the claim's.
    from lorascope.drift.record import StoredVerdict
    from lorascope.report.answers import strength

    # A verdict as drift.json stores it (its keys as read: the older "decisive", no "robust_to_normality").
    v = {"hypothesis": "LoRA drifts less",
         "claim": "LoRA's drift is lower than full fine-tuning's (geometric mean over seeds of the per-seed ratio)",
         "status": "not supported", "estimate": -1.47, "ci_low": -4.12, "ci_high": 0.09,
         "ci_method": "t on per-seed log ratios", "confidence": 0.95, "n": 8, "p_value": 0.914,
         "reverse_p_value": 0.086,
         "test": {"test": "paired t-test (df=7)", "n": 8, "statistic": -1.48, "p_value": 0.914,
                  "alternative": "greater"},
         "secondary": {"test": "sign-flip permutation (exact)", "p_value": 0.961, "n": 8, "statistic": -0.027,
                       "alternative": "greater", "min_attainable_p": 0.00390625,
                       "note": "enumerated all 2^8 sign patterns"},
         "secondary_status": "rejected", "secondary_reverse_p_value": 0.043, "tests_agree": False, "decisive": False,
         "alpha": 0.05, "n_comparisons": 1, "corrected_alpha": 0.05,
         "message": "LoRA drifts less not supported: LoRA drift is -147.0% lower than full FT, claim > 0%"}

    def stored(v: dict) -> StoredVerdict:
        return StoredVerdict.model_validate(v)

    assert strength(stored(v)) == ("not supported by the paired t-test (p = 0.914), but the exact sign-flip test says "
                                   "rejected (p = 0.043 for the opposite claim) — not confirmed")
    # The same with the family's adjusted p-values: each beside its raw p, the opposite claim's for "rejected".
    v.update(p_adjusted=1.0, reverse_p_adjusted=0.43, secondary_p_adjusted=1.0, secondary_reverse_p_adjusted=0.0430,
             correction="holm", family={"size": 10, "method": "holm", "complete": True}, n_comparisons=10,
             corrected_alpha=0.005)
    assert strength(stored(v)) == ("not supported by the paired t-test (p = 0.914, Holm-adjusted 1), but the exact "
                                   "sign-flip test says rejected (p = 0.043, Holm-adjusted 0.043 for the opposite "
                                   "claim) — not confirmed")


def _bench_with(h2_max_ratio=None):
    """A bench.json of LoRA served unmerged against merged at batch 1 (``h2_max_ratio``: H2's threshold where set)."""
    from lorascope.bench.record import BenchRecord

    row = {"strategy": "lora_separate", "batch_size": 1, "mean_ms": 10.0, "p50_ms": 10.0, "p95_ms": 11.0, "p99_ms": 12.0,
           "throughput_rps": 100.0, "ratio_to_merged": 1.4, "ratio_ci_low": 1.35, "ratio_ci_high": 1.45,
           "h2": "supported"}
    merged = {**row, "strategy": "lora_merged", "ratio_to_merged": 1.0, "ratio_ci_low": 1.0, "ratio_ci_high": 1.0}
    config = {} if h2_max_ratio is None else {"h2_max_ratio": h2_max_ratio}
    strategies = {name: {"description": description, "group": group, "adapters": ["sst2"], "load_s": load_s,
                         "memory": {"model_tensor_bytes": 4_194_304, "cuda_resident_bytes": None,
                                    "rss_load_delta_bytes": 12_582_912},
                         "artifact_bytes": artifact, "artifact_estimated": False}
                  for name, group, description, load_s, artifact in (
                      ("lora_merged", "merged", "LoRA merged into the weights (PEFT merge_and_unload)", 0.42,
                       4_194_304),
                      ("lora_separate", "separate", "LoRA unmerged, one adapter (PEFT)", 0.57, 65_536))}
    return BenchRecord.create(config=config, environment={"device": "cpu", "device_name": "CPU (x86_64)", "dtype": "float32",
                                                          "threads": 2},
                              strategies=strategies, results=[merged, row], checks=[], checks_passed=True)


def _old_bench_json() -> dict:
    """A bench.json written before H2's threshold was a setting: no schema version, no ``h2_max_ratio``, and each
    row's H2 reading under ``h2_at_most_30pct``."""
    old = {k: v for k, v in _bench_with(None).as_json().items() if k not in ("kind", "schema_version")}
    old["results"] = [{("h2_at_most_30pct" if k == "h2" else k): v for k, v in row.items()} for row in old["results"]]
    return old


def test_serving_section_states_the_h2_threshold_the_benchmark_used():
    from lorascope.report.answers import rq2_sentence
    from lorascope.report.serving_text import serving_section

    bench = _bench_with(1.5)
    text = serving_section(bench, {})
    assert "H2 (≤ 1.50×)" in text and "at or below 1.50" in text and "1.30" not in text
    assert "at most 50% added latency" in rq2_sentence(bench)
    # A bench.json that does not record the threshold: the protocol's 1.30.
    assert "H2 (≤ 1.30×)" in serving_section(_bench_with(None), {})


def test_serving_section_states_the_requests_measured_and_a_warm_up_of_none():
    from lorascope.bench.record import RequestStats
    from lorascope.report.serving_text import serving_section

    requests = {"sst2": RequestStats(warmup=0, measured=6, mean_seq_len=21.5, real_token_fraction=0.8)}
    text = serving_section(_bench_with(1.5).model_copy(update={"requests": requests}), {})
    assert "; 6 measured requests per strategy and batch size after 0 warm-up" in text
    assert "Device: CPU (x86_64), float32, 2 threads; base model" in text  # one bracket group, the device's own
    # A benchmark that recorded no request counts says so, not a number.
    assert "; ? measured requests per strategy and batch size after ? warm-up" in serving_section(_bench_with(1.5), {})


def test_a_study_without_drift_says_so_and_each_skipped_analysis_is_one_sentence():
    """A study that ran no drift stage: one line where the drift section would be, not empty tables
    and a layers sentence listing no layers; each analysis skipped for a task is a sentence ending in
    a full stop (with or without one in the recorded reason), and the training settings say when
    they are the defaults."""
    config = {"name": "no-drift", "model": "minilm", "tasks": ["sst2"], "methods": ["lora", "full"], "seeds": [1]}
    md = render(study_records({"config": config, "drift_skipped": {"rte": "no finished run of full"},
                               "lens_skipped": {"probes": {"sst2": "no other task to probe."}}}), {})
    assert "## Representation drift\n\nNo drift analysis in this study.\n\n## " in md
    assert "average different layers" not in md and "| task | method | drift (1−CKA)" not in md
    assert "Drift compares n =" not in md
    assert "- No drift analysis for rte: no finished run of full.\n" in md
    assert "- No probe retention for sst2: no other task to probe.\n" in md
    assert "training settings: the defaults." in md


def test_the_serving_figure_is_one_paragraph_apart_from_correctness():
    from lorascope.report.serving_text import serving_section

    text = serving_section(_bench_with(1.5), {"serving_ratio": "figures/serving_ratio.png"})
    assert "![serving_ratio](figures/serving_ratio.png)\n\n### Correctness" in text


def test_serving_section_reads_a_bench_json_written_before_the_threshold_was_a_setting(tmp_path):
    import json

    from lorascope.bench.record import BenchRecord
    from lorascope.report.serving_text import serving_section

    # The file as written then: read through the record, its rows' h2_at_most_30pct is their H2 reading.
    (tmp_path / "bench.json").write_text(json.dumps(_old_bench_json()), encoding="utf-8")
    record = BenchRecord.read(tmp_path / "bench.json")
    assert [row.h2 for row in record.results] == ["supported", "supported"]
    old = serving_section(record, {})
    assert "H2 (≤ 1.30×)" in old and "| supported |" in old


def _lens(lora, full, p, intruders=(3.0, 0.0)):
    """A weights.json whose relative update (LoRA, full FT, paired t p) and intruder means are these."""
    return small_weights_record({"relative_update": (lora, full, p), "intruders": (*intruders, 0.01)})


def test_lenses_side_by_side_says_when_they_disagree():
    from lorascope.report.lenses_text import lenses_summary

    drift = {"sst2": small_drift_record("sst2", {"lora": 0.01, "full": 0.05}, p_value=0.001)}
    text = lenses_summary(study_records({"drift": drift, "weights": {"sst2": _lens(0.2, 0.1, 0.02)}}))
    # Representations say LoRA stays closer; its weights moved further and carry intruders.
    assert "| representation drift (1 − CKA) | 0.01 | 0.05 | LoRA | 0.001 (< 0.05) |" in text
    # Each weight lens is named with the matrices its record says it read.
    adapted = "on the matrices LoRA adapts (q_proj, v_proj: 12 matrices)"
    assert ("The lenses disagree: LoRA stays closer by representation drift (1 − CKA); full FT stays closer by "
            f"weight update ‖ΔW‖/‖W₀‖ {adapted}, intruder dimensions {adapted}." in text)
    agree = lenses_summary(study_records({"drift": drift,
                                          "weights": {"sst2": _lens(0.05, 0.1, 0.02, intruders=(0.0, 0.0))}}))
    assert "Every lens agrees" not in agree and "The lenses that separate the methods agree: LoRA stays closer" in agree


@pytest.mark.slow
def test_the_report_states_each_sanity_check_and_what_a_failure_means():
    from lorascope.records import SanityCheck, SanityRecord
    from lorascope.report.markdown import render

    data = synthetic_study(3)
    settings = {"samples": 10, "max_epochs": 10, "threshold": 0.1}
    passed = SanityRecord.create(settings=settings, results=[
        SanityCheck(task="sst2", method="lora", epochs_run=5, final_loss=0.0916, threshold=0.1, passed=True),
        SanityCheck(task="sst2", method="full", epochs_run=4, final_loss=0.0385, threshold=0.1, passed=True)])
    text = render(study_records({**data, "sanity": passed}), {})
    assert ("Sanity checks (each method fits 10 training examples to a training loss under 0.1 within 10 epochs): "
            "sst2 LoRA passed (loss 0.0916 after 5 epochs); sst2 full fine-tuning passed (loss 0.0385 after 4 epochs).\n"
            ) in text
    assert "bug in the data" not in text
    failed = passed.model_copy(update={"results": [passed.results[0], passed.results[1].model_copy(
        update={"passed": False, "final_loss": 0.41, "epochs_run": 10})]})
    text = render(study_records({**data, "sanity": failed}), {})
    assert "sst2 full fine-tuning **FAILED** (loss 0.41 after 10 epochs)." in text
    assert "points to a bug in the data, the classification head or the optimiser set-up" in text
    assert "Sanity checks" not in render(study_records({**data, "sanity": None}), {})


def test_the_console_table_names_the_device_with_one_bracket_group():
    from lorascope.bench.output import results_table

    assert results_table(_bench_with(1.5)).title == "serving cost: ? on CPU (x86_64), float32, 2 threads"
