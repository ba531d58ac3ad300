"""Published results re-read with a method introduced after they were published: the numbers the results'
READMEs quote for the re-read are computed here from the published records, so a README cannot say more
than the records give.

The matched-accuracy comparison of a sweep was published with a plain percentile bootstrap over seeds;
its interval is now t-calibrated (``lorascope.stats.frontier.matched_accuracy``). The published reports
keep the interval their study decided with; each README states the re-read beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lorascope.metrics import format_number, format_p
from lorascope.stats.frontier import SweepPoint, matched_accuracy
from lorascope.stats.power import pairs_for_power

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
SWEEPS = {"frontier-minilm": "sst2", "mrpc-minilm": "mrpc", "smollm2-sweep": "sst2"}


def rematched(study: str) -> dict[str, object]:
    """The matched-accuracy comparison recomputed from a published study's drift.json: its frontier's points,
    from the runs of the frontier's seeds."""
    drift = json.loads((RESULTS / study / "records" / "drift" / SWEEPS[study] / "drift.json").read_text())
    frontier = drift["frontier"]
    seeds = frontier.get("seeds")
    points = []
    for row in frontier["table"]:
        runs = [r for r in drift["runs"] if r["method"] == row["label"] and r.get("metric") is not None
                and (seeds is None or r["seed"] in seeds)]
        points.append(SweepPoint(row["label"], row["method"], row["setting"], np.array([r["metric"] for r in runs]),
                                 np.array([r["mean_drift"] for r in runs])))
    return matched_accuracy(points, n_resamples=frontier["matched"]["n_resamples"])


def reread_sentence(result: dict[str, object]) -> str:
    """The words a README uses for the re-read: ratio, interval and p as the report writes them."""
    low, high = result["ci"]
    return (f"drift ratio {format_number(result['ratio'], 2)}, t-calibrated 95% interval "
            f"{format_number(low, 2)} to {format_number(high, 2)}, p = {format_p(result['p'])}")


@pytest.mark.parametrize("study", sorted(SWEEPS))
def test_each_sweep_readme_quotes_its_recomputed_matched_comparison(study):
    result = rematched(study)
    readme = " ".join((RESULTS / study / "README.md").read_text().split())
    assert reread_sentence(result) in readme, reread_sentence(result)
    outcome = {"less": "LoRA drifts less", "more": "LoRA drifts more", "undecided": "no difference is established"}
    assert f"{reread_sentence(result)}: {outcome[str(result['outcome'])]}" in readme


def test_the_frontier_studys_matched_verdict_does_not_survive_the_calibrated_interval():
    published = json.loads((RESULTS / "frontier-minilm" / "records" / "drift" / "sst2" / "drift.json").read_text())
    assert published["frontier"]["matched"]["outcome"] == "less"
    assert rematched("frontier-minilm")["outcome"] == "undecided"


def stored_power_calculations(record: object):
    """Every verdict of a drift record (or a summary) that stores the seed pairs its test needs: (hypothesis, verdict)."""
    if isinstance(record, dict):
        if isinstance(record.get("seeds_needed"), dict) and "corrected_alpha" in record:
            yield record["hypothesis"], record
        for value in record.values():
            yield from stored_power_calculations(value)
    elif isinstance(record, list):
        for value in record:
            yield from stored_power_calculations(value)


def test_a_published_seed_count_the_power_function_got_wrong_has_an_erratum():
    """The power function once read a NaN far in the noncentral t's tail as "not enough power" and bisected to a
    wrong count. Every published count is recomputed from its record's d_z; a changed one must be in its README."""
    wrong = []
    for record in sorted(RESULTS.glob("*/records/drift/*/drift.json")):
        for hypothesis, verdict in stored_power_calculations(json.loads(record.read_text())):
            need = verdict["seeds_needed"]
            if need.get("effect_size_dz") is None:
                continue
            right = pairs_for_power(need["effect_size_dz"], verdict["corrected_alpha"] or verdict["alpha"], need["power"])
            if right != need["t"]:
                study = record.parents[3].name
                wrong.append((study, hypothesis, need["t"], right))
                readme = " ".join((RESULTS / study / "README.md").read_text().split())
                assert f"{hypothesis}'s seeds for 80% power" in readme and f"needs {right} seed pairs, not {need['t']}" in readme
    assert ("frontier-minilm", "H1a", 393, 6) in wrong  # the known error is found, so the check reads the records
