"""The report of a study whose verdicts form one family and whose methods were swept: raw and
Holm-adjusted p side by side, primary hypotheses first, the learning-rate frontier with its figure,
statements and selected points; and the report of results written before any of this still builds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lorascope.drift.analysis import RunDrift, seed_noise_floor, summarise_method
from lorascope.drift.compare import compare_methods
from lorascope.drift.frontier import sweep_frontier
from lorascope.metrics import format_drift, format_ratio
from lorascope.report import build_report
from lorascope.report.markdown import render
from lorascope.stats.family import correct_study
from tests.conftest import baselines_record
from tests.helpers import small_drift_record, study_records
from tests.test_report import _run

SEEDS = (1, 2, 3)


def _drift_record(task: str, runs: list[RunDrift], lora: str, full: str, comparison: dict) -> dict:
    labels = sorted({r.method for r in runs})
    return {
        "task": task, "base": "m", "pooling": "mean", "n_samples": 300, "n_samples_note": "", "n_layers": 1,
        "dev_examples_note": "the runs store no per-example dev predictions: metric comparisons treat the dev examples "
                             "as fixed (seeds only)",
        "controls": [], "runs": [r.to_dict() for r in runs], "skipped_runs": [],
        "methods": {m: summarise_method([r for r in runs if r.method == m]) for m in labels},
        "noise_floor": {m: seed_noise_floor([r for r in runs if r.method == m]) for m in labels},
        "variants": {m: {"method": "full" if m.startswith("full") else "lora"} for m in labels},
        "primary": lora, "comparison": comparison, "comparisons": {lora: comparison}, "config": {"pair": [lora, full]},
    }


def write_study(root: Path, name: str, drift: dict[str, dict], config: dict | None = None) -> Path:
    """A study folder as the stages leave it: config, baselines, one metrics.json per run, drift.json per task."""
    tasks = list(drift)
    labels = list(dict.fromkeys(r["method"] for d in drift.values() for r in d["runs"]))
    cfg = {"name": name, "model": "m", "tasks": tasks, "methods": labels, "seeds": list(SEEDS), **(config or {})}
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    baselines_record({t: {"accuracy": 0.51} for t in tasks}).write(root)
    for task, d in drift.items():
        for r in d["runs"]:
            run = root / "train" / f"{task}-{r['method']}-s{r['seed']}"
            run.mkdir(parents=True)
            kind = "full" if r["method"].startswith("full") else "lora"
            (run / "metrics.json").write_text(json.dumps(
                {"task": task, "method": kind, "variant": None if r["method"] == kind else r["method"], "seed": r["seed"],
                 "status": "ok", "main_metric": "accuracy", "dev": {"accuracy": r["metric"]}, "n_eval": 300}))
        (root / "drift" / task).mkdir(parents=True)
        (root / "drift" / task / "drift.json").write_text(json.dumps(d))
    return root


# --- A learning-rate sweep -------------------------------------------------------------------------

# label -> (setting, per-seed dev accuracy, per-seed drift): LoRA reaches the same accuracies as full
# fine-tuning with a fraction of its drift.
POINTS = {
    "lora_lr0p001": (0.001, (0.800, 0.805, 0.795), (0.020, 0.024, 0.018)),
    "lora_lr0p002": (0.002, (0.840, 0.845, 0.835), (0.030, 0.034, 0.028)),
    "full_lr1em05": (1e-05, (0.790, 0.800, 0.785), (0.080, 0.090, 0.075)),
    "full_lr2em05": (2e-05, (0.850, 0.845, 0.855), (0.120, 0.130, 0.110)),
}
SELECTION = {
    "lora": {"label": "lora_lr0p002", "by": "loss", "values": {"lora_lr0p001": 0.412, "lora_lr0p002": 0.398},
             "rule": "the point with the lowest mean selection-split loss over seeds"},
    "full": {"label": "full_lr2em05", "by": "loss", "values": {"full_lr1em05": 0.431, "full_lr2em05": 0.405},
             "rule": "the point with the lowest mean selection-split loss over seeds"},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    runs = [_run(label, seed, drift, metric) for label, (_, metrics, drifts) in POINTS.items()
            for seed, metric, drift in zip(SEEDS, metrics, drifts)]
    lora, full = SELECTION["lora"]["label"], SELECTION["full"]["label"]
    comparison = compare_methods([r for r in runs if r.method == lora], [r for r in runs if r.method == full])
    comparison = correct_study({"sst2": comparison})["sst2"]
    record = _drift_record("sst2", runs, lora, full, comparison)
    points = {label: {"method": "full" if label.startswith("full") else "lora", "setting": setting}
              for label, (setting, _, _) in POINTS.items()}
    record.update(frontier=sweep_frontier(runs, points, n_resamples=400), selection=SELECTION)
    study = write_study(tmp_path_factory.mktemp("swept") / "study", "swept", {"sst2": record},
                        {"sweep": {"lora": {"lr": [0.001, 0.002]}, "full": {"lr": [1e-05, 2e-05]}}})
    build_report(study)
    return study


def _drift(study: Path) -> dict:
    return json.loads((study / "drift" / "sst2" / "drift.json").read_text())


def _section(md: str, heading: str) -> str:
    return md.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


@pytest.mark.slow
def test_the_sweep_section_quotes_the_frontier_and_draws_it(swept):
    frontier = _drift(swept)["frontier"]
    assert frontier["matched"]["outcome"] == "less" and frontier["interaction"]["p"] is not None
    md = (swept / "report" / "report.md").read_text()
    section = _section(md, "Learning-rate sweep")
    # The statements are drift.json's, word for word.
    assert f"- Frontiers compared: {frontier['matched']['statement']}." in section
    assert f"- Method × setting: {frontier['interaction']['statement']}." in section
    # One row per point, the selected ones marked, the metric in percent and the drift's asymmetric interval.
    row = next(r for r in frontier["table"] if r["label"] == "lora_lr0p002")
    lo, hi = row["drift_ci"]
    assert (f"| lora_lr0p002 (selected) | LoRA | 0.002 | 3 | {100 * row['metric_mean']:.1f}% | "
            f"[{100 * row['metric_ci'][0]:.1f}%, {100 * row['metric_ci'][1]:.1f}%] | {format_drift(row['drift_gmean'])} | "
            f"[{format_drift(lo)}, {format_drift(hi)}] |") in section
    assert "| lora_lr0p001 | LoRA | 0.001 | 3 |" in section and "| full_lr1em05 | full fine-tuning | 1e-05 | 3 |" in section
    # Which point each method's verdicts use, and by which rule.
    for method, name in (("lora", "LoRA"), ("full", "full fine-tuning")):
        chosen = SELECTION[method]
        assert f"- {name}: the verdicts use **{chosen['label']}**, chosen by the declared rule — {chosen['rule']}" in section
    assert "(mean selection-split loss over seeds: lora_lr0p001 0.412, lora_lr0p002 0.398)" in section
    # The figure, saved beside the others and inlined in the HTML.
    figure = swept / "report" / "figures" / "frontier.png"
    assert figure.is_file() and figure.stat().st_size > 5000
    assert "![frontier](figures/frontier.png)" in section
    html = (swept / "report" / "report.html").read_text()
    assert "Learning-rate sweep" in html and html.count("data:image/png;base64,") >= 2


def test_the_verdicts_are_of_the_selected_pair_and_say_so(swept):
    md = (swept / "report" / "report.md").read_text()
    verdicts = _section(md, "Verdicts")
    assert ("- sst2: the verdicts compare lora_lr0p002 with full_lr2em05, each its method's sweep point chosen by the "
            "declared rule (see Learning-rate sweep).") in verdicts
    reduction = _drift(swept)["comparison"]["reduction_percent"]
    assert (f"LoRA (lora_lr0p002)'s representations drifted {reduction:.1f}% less than full fine-tuning "
            "(full_lr2em05)'s") in md
    assert "no paired comparison" not in md and "decisive" not in md.lower()


def test_summary_json_carries_the_frontier_verdict(swept):
    summary = json.loads((swept / "report" / "summary.json").read_text())
    frontier = _drift(swept)["frontier"]
    verdict = summary["frontier"]["sst2"]
    assert verdict["outcome"] == frontier["matched"]["outcome"] and verdict["statement"] == frontier["matched"]["statement"]
    assert verdict["ratio"] == frontier["matched"]["ratio"] and verdict["p"] == frontier["matched"]["p"]
    assert verdict["interaction"]["statement"] == frontier["interaction"]["statement"]
    assert verdict["compared"] == {"lora": "lora_lr0p002", "full": "full_lr2em05"}
    assert summary["drift"]["sst2"]["frontier"] == frontier and summary["drift"]["sst2"]["selection"] == SELECTION


@pytest.mark.slow
def test_a_study_without_a_sweep_has_no_sweep_section():
    from tests.test_report import synthetic_study

    md = render(study_records(synthetic_study(3)), {})
    assert "Learning-rate sweep" not in md and "frontier" not in md


# --- A family in which a raw p passes and the adjusted one does not --------------------------------

# Per-seed log(LoRA / full) drift: sst2's ratios all below 1 (raw one-sided p about 0.006), the other
# tasks' around 1. Alone, "LoRA drifts less" on sst2 would pass at 0.05; in a family of 15 it does not.
LOG_RATIOS = {"sst2": (-0.30, -0.05, -0.25, -0.10, -0.20), "mrpc": (0.10, -0.10, 0.05, -0.05, 0.0),
              "rte": (0.08, -0.12, 0.02, -0.03, 0.04)}
FULL_DRIFT = (0.10, 0.12, 0.09, 0.11, 0.10)


def family_study() -> dict:
    drift, runs = {}, []
    for task, ratios in LOG_RATIOS.items():
        full = [_run("full", s, d, 0.80 + 0.01 * s) for s, d in enumerate(FULL_DRIFT)]
        lora = [_run("lora", s, d * float(np.exp(r)), 0.81 + 0.01 * s) for s, (d, r) in enumerate(zip(FULL_DRIFT, ratios))]
        drift[task] = {"task": task, "base": "m", "pooling": "mean", "n_layers": 1, "n_samples": 300, "controls": [],
                       "runs": [r.to_dict() for r in lora + full],
                       "methods": {"lora": summarise_method(lora), "full": summarise_method(full)},
                       "noise_floor": {"lora": seed_noise_floor(lora), "full": seed_noise_floor(full)},
                       "comparison": compare_methods(lora, full, n_tasks=len(LOG_RATIOS))}
        runs += [{"task": task, "method": r.method, "seed": r.seed, "status": "ok", "main_metric": "accuracy",
                  "dev": {"accuracy": r.metric}, "n_eval": 300, "folder": f"{task}-{r.method}-s{r.seed}"} for r in lora + full]
    studied = correct_study({task: d["comparison"] for task, d in drift.items()})
    for task, comparison in studied.items():
        drift[task]["comparison"] = comparison
    return {"drift": drift, "baselines": baselines_record({t: {"accuracy": 0.51} for t in drift}), "runs": runs,
            "config": {"name": "family", "model": "m", "seeds": list(range(5)), "tasks": list(drift)},
            "bench": None, "provenance": None, "timings": {}, "study": "family"}


@pytest.mark.slow
def test_a_raw_p_below_alpha_that_the_family_does_not_keep_is_shown_and_not_called_supported():
    data = family_study()
    v = data["drift"]["sst2"]["comparison"]["verdicts"]["lower"]
    assert v["p_value"] < 0.05 < v["p_adjusted"] and v["status"] == "inconclusive" and v["family"]["size"] == 15
    md = render(study_records(data), {})
    [row] = [line for line in md.splitlines() if line.startswith("| sst2 | LoRA drifts less |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "**inconclusive**" and cells[6:8] == [f"{v['p_value']:.3g}", f"{v['p_adjusted']:.3g}"]
    assert cells[9:11] == [f"{v['secondary']['p_value']:.3g}", f"{v['secondary_p_adjusted']:.3g}"]
    assert cells[11] == "Holm over 15" and "supported" not in row
    [answer] = [line for line in md.splitlines() if line.startswith("- sst2 — LoRA drifts less (secondary):")]
    assert f"(paired t-test p = {v['p_value']:.3g}, Holm-adjusted {v['p_adjusted']:.3g}; not decided)" in answer
    assert "supported" not in answer
    assert ("The study's 15 verdicts (5 hypotheses × 3 tasks) are one family, adjusted together by Holm at family-wise "
            "α = 0.05: a status rests on the adjusted p (supported or rejected where it is ≤ 0.05)") in md
    assert "Holm compares the smallest raw p of a test with α/15 = 0.003333, the next with α/14" in md


@pytest.mark.slow
def test_primary_hypotheses_lead_the_answers_and_the_verdicts():
    md = render(study_records(family_study()), {})
    assert ("Primary hypotheses, on which the answers rest: H1a, H1b. Secondary, in the same family and corrected the "
            "same way: H1b (debiased), LoRA drifts less, LoRA drifts less (debiased).") in md
    lines = md.splitlines()
    order = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in
             ("- sst2 — H1a:", "- sst2 — H1b:", "- sst2 — H1b (debiased) (secondary):", "- sst2 — LoRA drifts less (secondary):")]
    assert order == sorted(order)
    verdicts = _section(md, "Verdicts")
    primary, secondary = verdicts.split("**Secondary hypotheses**")
    assert "**Primary hypotheses**" in primary and "| sst2 | H1b |" in primary and "| sst2 | LoRA drifts less |" in secondary
    assert "| sst2 | LoRA drifts less |" not in primary


@pytest.mark.slow
def test_reductions_are_read_on_the_log_scale():
    data = family_study()
    c = data["drift"]["sst2"]["comparison"]
    ratio = c["log_ratio"]
    assert ratio["gm_ratio"] == pytest.approx(np.exp(np.mean(LOG_RATIOS["sst2"])))
    md = render(study_records(data), {})
    low, high = ratio["reduction_percent_ci"]
    assert (f"geometric mean over seeds of the per-seed drift ratio LoRA / full {format_ratio(ratio['gm_ratio'])} (95% t "
            f"interval over seeds on the log scale [{format_ratio(ratio['gm_ratio_ci'][0])}, "
            f"{format_ratio(ratio['gm_ratio_ci'][1])}]), Δ% = 100 · "
            f"(1 − ratio) {c['reduction_percent']:.1f}% [{low:.1f}%, {high:.1f}%]") in md
    sentence = next(line for line in md.splitlines() if line.startswith("- **sst2**"))
    assert sentence.count("(") == sentence.count(")") and sentence.endswith("%."), sentence  # every bracket closes
    assert "Fieller" not in md
    # The metric difference, over seeds only here (no per-example predictions), with drift.json's reason.
    section = md.split("### LoRA − full fine-tuning on the dev metric", 1)[1].split("\n## ", 1)[0]
    assert "| sst2 | lora − full | 5 | +1.0 points |" in section and "not available" in section
    assert f"- sst2: {c['metric_difference']['note']}." in section
    # mrpc's ratios straddle 1: its noise caveat, verbatim.
    caveat = data["drift"]["mrpc"]["comparison"]["noise_caveat"]
    assert caveat["applies"] and f"mrpc: could be seed noise — {caveat['text']}." in md


# --- Results written before the family, the log scale and the sweep --------------------------------

PUBLISHED = Path(__file__).resolve().parents[1] / "docs" / "results" / "smollm2" / "summary.json"


def old_style(comparison: dict, n_tasks: int) -> dict:
    """A comparison as drift.json recorded it before verdicts were one family: the published results' keys only."""
    published = json.loads(PUBLISHED.read_text())["drift"]["sst2"]["comparison"]
    old_verdict_keys = set(published["verdicts"]["h1b"])
    out = {k: v for k, v in comparison.items() if k in set(published) | {"per_layer"}}
    out["reduction_percent"] = comparison["reduction_percent_of_means"]
    out["reduction_percent_debiased"] = comparison["reduction_percent_of_means_debiased"]
    for key in ("reduction_ci_seeds_samples", "reduction_ci_seeds_samples_debiased"):
        out[key] = {k: v for k, v in out[key].items() if k in ("estimate", "low", "high", "confidence", "method", "n")}
    out["verdicts"] = {}
    for name, v in comparison["verdicts"].items():
        old = {k: value for k, value in v.items() if k in old_verdict_keys}
        old.update(n_comparisons=n_tasks, corrected_alpha=0.05 / n_tasks, decisive=v["robust_to_normality"])
        if name != "h1a":
            old["ci_method"] = "Fieller (t)"
        out["verdicts"][name] = old
    assert set(out["verdicts"]["h1b"]) == old_verdict_keys
    return out


@pytest.mark.slow
def test_a_report_of_results_written_before_the_family_still_builds(tmp_path):
    data = family_study()
    drift = {}
    for task, d in data["drift"].items():
        runs = [RunDrift(**{k: v for k, v in r.items() if k in RunDrift.__dataclass_fields__}) for r in d["runs"]]
        record = _drift_record(task, runs, "lora", "full", old_style(d["comparison"], len(data["drift"])))
        for key in ("dev_examples_note", "variants", "config", "comparisons", "primary"):
            del record[key]
        drift[task] = record
    study = write_study(tmp_path / "old", "old", drift)
    build_report(study)
    md = (study / "report" / "report.md").read_text()
    assert ("Each verdict is decided at α/3 = 0.01667 (Bonferroni over 3 tasks; these results carry no adjusted "
            "p-values).") in md
    assert "every verdict at α = 0.05/3 = 0.01667 (Bonferroni over 3 tasks)" in md
    assert "Holm-adjusted" not in md and "decisive" not in md.lower() and "Learning-rate sweep" not in md
    assert "| not adjusted |" in md and "(Fieller (t))" in md
    assert "(mean drift " in md  # the reduction as its ratio of means, the only reading these results have
    # The noise caveat, which these results did not record, computed from their per-seed drifts.
    from lorascope.drift.analysis import noise_caveat

    old = drift["mrpc"]["comparison"]
    assert noise_caveat(np.array(old["drift_lora"]), np.array(old["drift_full"]))["text"] in md
    summary = json.loads((study / "report" / "summary.json").read_text())
    assert summary["frontier"] == {} and set(summary["drift"]) == {"sst2", "mrpc", "rte"}


@pytest.mark.slow
def test_a_metric_difference_over_seeds_and_dev_examples_is_shown_beside_the_seeds_only_one():
    import dataclasses

    rng = np.random.default_rng(0)
    n_dev = 300

    def with_examples(run: RunDrift, n_correct: int) -> RunDrift:
        correct = np.zeros(n_dev)
        correct[rng.choice(n_dev, n_correct, replace=False)] = 1.0
        return dataclasses.replace(run, metric=n_correct / n_dev, dev_correct=correct)

    full = [with_examples(_run("full", s, d, 0.0), 240 + 3 * s) for s, d in enumerate(FULL_DRIFT)]
    lora = [with_examples(_run("lora", s, 0.5 * d, 0.0), 246 + 2 * s) for s, d in enumerate(FULL_DRIFT)]
    comparison = compare_methods(lora, full)
    crossed = comparison["metric_difference"]["seeds_and_examples"]
    assert crossed is not None and comparison["verdicts"]["h1a"]["uncertainty"] == "seeds and dev examples"
    data = family_study()
    data["drift"] = {"sst2": {**data["drift"]["sst2"], "comparison": comparison,
                              "runs": [r.to_dict() for r in lora + full]}}
    data["runs"] = [{"task": "sst2", "method": r.method, "seed": r.seed, "status": "ok", "main_metric": "accuracy",
                     "dev": {"accuracy": r.metric}, "n_eval": n_dev} for r in lora + full]
    md = render(study_records(data), {})
    section = md.split("### LoRA − full fine-tuning on the dev metric", 1)[1].split("\n## ", 1)[0]
    seeds = comparison["metric_difference"]["seeds_only"]
    [row] = [line for line in section.splitlines() if line.startswith("| sst2 |")]
    assert (f"| [{100 * seeds['low']:+.1f}, {100 * seeds['high']:+.1f} points] | paired t-test, n=5, two-sided: "
            f"p={seeds['test']['p_value']:.3g} | [{100 * crossed['low']:+.1f}, {100 * crossed['high']:+.1f} points] | "
            f"seeds × dev examples t-test, n=5, two-sided: p={crossed['test']['p_value']:.3g} |") in row
    assert "treat the dev examples as fixed" not in section
    [h1a] = [line for line in md.splitlines() if line.startswith("| sst2 | H1a |")]
    assert "| seeds and dev examples |" in h1a and "(t over seeds × dev examples)" in h1a


def _overlapping(low: float, high: float, majority: float):
    """A collected study whose one task's frontiers overlap over [low, high] of F1, majority baseline ``majority``
    (as the runs' learning checks recorded it; the study ran no baselines stage)."""
    matched = {"method_a": "lora", "method_b": "full", "n_levels": 21, "n_resamples": 2000, "overlap": [low, high],
               "n_points": {"lora": 3, "full": 3}, "ratio": 0.5, "ci": [0.4, 0.6], "p": 0.001,
               "n_overlapping_resamples": 1987, "outcome": "less",
               "statement": f"at matched accuracy ({low:.3f}–{high:.3f}) lora drifts less: drift ratio lora/full 0.50"}
    runs = [{"task": "mrpc", "method": method, "seed": seed, "status": "ok", "main_metric": "f1", "dev": {"f1": 0.85},
             "learning_check": {"learned": True, "metric": "f1", "majority_baseline": majority}}
            for method in ("lora", "full") for seed in (1, 2, 3)]
    drift = small_drift_record("mrpc", seeds=(1, 2, 3), frontier={"table": [], "missing": [], "matched": matched})
    return study_records({"drift": {"mrpc": drift}, "runs": runs})


@pytest.mark.parametrize("low, high, expected", [
    (0.812, 0.828, "- The whole overlap (81.2%–82.8%) is below the majority baseline (81.2%) plus the learning "
                   "margin (2.0 points): the frontiers are compared where neither method learned the task"),
    (0.812, 0.872, "- 33% of the overlap (81.2%–83.2% of 81.2%–87.2%) is below the majority baseline (81.2%) plus "
                   "the learning margin (2.0 points): part of the ratio compares models that did not learn the task."),
    (0.84, 0.88, None),
])
def test_a_frontier_overlap_at_majority_level_is_called_a_comparison_of_models_that_did_not_learn(low, high, expected):
    from lorascope.report.sweep_text import sweep_section

    section = sweep_section(_overlapping(low, high, 0.812), {})
    assert "- Frontiers compared: at matched accuracy" in section
    if expected is None:
        assert "learning margin" not in section
    else:
        assert expected in section
