"""The report's prose, read as a reviewer reads it, over many kinds of study: no stray or empty
brackets, no sentence with nothing in it (": ."), no "None" or "nan" printed for a missing value, no
two blank lines in a row. These are the slips a template's branches make where no golden report
reaches them; each study below takes other branches."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorascope.report.collect import collect
from lorascope.report.markdown import render
from tests.helpers import prose_faults, study_records
from tests.test_report import _bench_with, synthetic_study
from tests.test_report_family import family_study
from tests.test_report_not_learned import not_learned_study

PUBLISHED = sorted((Path(__file__).resolve().parents[1] / "docs" / "results").glob("*/records"))
FIGURES = {name: f"figures/{name}.png" for name in ("drift_by_layer", "drift_heatmap", "drift_reduction",
                                                     "metric_vs_drift", "frontier", "lenses_by_rank", "serving_ratio")}


def test_the_checks_find_each_kind_of_slip():
    clean = "## Answers\n\n- sst2: LoRA drifted 12.8% less (mean drift 0.284 vs 0.326 [0.1, 0.2]); on a −1..1 scale.\n"
    assert prose_faults(clean) == []
    for slip in ("ratio gives 12.7%).", "no measure could compare the pair ().", "How each interval was made: .",
                 "training settings: None.", "mean drift nan vs 0.3.", "passed..", "the pair .", "\n\n\nnext"):
        assert prose_faults(clean + slip + "\n"), slip


def _study(name: str) -> dict:
    config = {"name": name, "model": "minilm", "tasks": ["sst2"], "methods": ["lora", "full"], "seeds": [1, 2, 3]}
    if name == "no-drift":
        return {"config": config, "drift_skipped": {"rte": "no finished run of full"},
                "lens_skipped": {"probes": {"sst2": "no other task to probe"}}}
    if name == "bench-only":
        return {"config": config, "bench": _bench_with(1.3)}
    if name == "one-seed-pair":
        return synthetic_study(1)
    if name == "three-seeds":
        return synthetic_study(3, tasks=("sst2", "mrpc"))
    if name == "eight-seeds":
        return synthetic_study(8)
    if name == "family":
        return family_study()
    if name == "not-learned":
        return not_learned_study()
    raise KeyError(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["no-drift", "bench-only", "one-seed-pair", "three-seeds", "eight-seeds", "family",
                                  "not-learned"])
@pytest.mark.parametrize("figures", [False, True], ids=["no-figures", "figures"])
def test_a_studys_report_reads_without_slips(name, figures):
    md = render(study_records(_study(name)), FIGURES if figures else {})
    assert prose_faults(md) == []


@pytest.mark.slow
@pytest.mark.parametrize("records", PUBLISHED, ids=[p.parent.name for p in PUBLISHED])
def test_a_published_studys_report_reads_without_slips(records):
    assert prose_faults(render(collect(records), FIGURES)) == []
