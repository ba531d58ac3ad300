"""RQ1 under other drift measures and the other layer choice: the measures themselves, and the
rows ``run_drift`` adds beside the verdicts."""

import numpy as np
import pytest

from lorascope.drift import DriftConfig, run_drift
from lorascope.drift.robustness import MEASURES, robustness_rows, run_dissimilarities
from lorascope.errors import LorascopeError
from lorascope.similarity.mutual_knn import mutual_knn


def _points(n=60, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_mutual_knn_is_one_for_the_same_neighbourhoods_and_low_for_unrelated_ones():
    x = _points()
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))
    assert mutual_knn(x, x) == 1.0
    assert mutual_knn(x, 3.0 * x @ rotation) == pytest.approx(1.0)  # cosine neighbours survive rotation and scale
    shuffled = x[np.random.default_rng(2).permutation(len(x))]
    assert mutual_knn(x, shuffled, k=5) < 0.3  # chance is k / (n - 1) ≈ 0.08
    with pytest.raises(LorascopeError, match="1 <= k < n"):
        mutual_knn(x, x, k=60)


def test_every_measure_is_zero_for_an_unchanged_run_and_positive_for_a_moved_one():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 40, 6))
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in run_dissimilarities(base, base.copy(), "all").values())
    moved = base.copy()
    moved[1:] += rng.normal(scale=2.0, size=moved[1:].shape)  # layer 0 (the embedding output) unchanged
    values = run_dissimilarities(base, moved, "all")
    assert all(v > 0 for v in values.values())
    # Leaving out the one unchanged layer raises the average by exactly L / (L - 1).
    assert values["cka_blocks"] == pytest.approx(values["cka_all_layers"] * 3 / 2)
    # The other measures average the layers the verdicts use.
    blocks = run_dissimilarities(base, moved, "blocks")
    assert blocks["procrustes"] == pytest.approx(values["procrustes"] * 3 / 2)


def test_rows_compare_the_pair_on_the_log_scale_and_swap_to_the_reciprocal():
    runs = [{"method": m, "seed": s, "measures": dict.fromkeys(MEASURES, v)}
            for m, values in (("lora", (0.1, 0.2, 0.15)), ("full", (0.3, 0.35, 0.5))) for s, v in zip((1, 2, 3), values)]
    rows = robustness_rows(runs, "lora", "full", "all")
    assert [r["measure"] for r in rows] == list(MEASURES)
    first = rows[0]
    expected = float(np.exp(np.mean(np.log([0.1 / 0.3, 0.2 / 0.35, 0.15 / 0.5]))))
    assert first["ratio"]["gm_ratio"] == pytest.approx(expected) and first["direction"] == "lora_less"
    assert first["is_verdict_measure"] and not rows[1]["is_verdict_measure"]
    swapped = robustness_rows(runs, "full", "lora", "all")[0]
    assert swapped["ratio"]["gm_ratio"] == pytest.approx(1 / expected) and swapped["direction"] == "lora_more"
    assert robustness_rows(runs[:1] + runs[3:4], "lora", "full", "all")[0]["note"].startswith("1 seed pair")


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    from tests.helpers import train_tiny_runs

    return train_tiny_runs(tmp_path_factory.mktemp("runs"), "rte", max_length=48)


@pytest.mark.slow
def test_the_verdicts_own_measure_is_a_row_and_the_other_layer_choice_beside_it(glue_dir, trained_runs, tmp_path):
    base = dict(task="rte", base="tiny-llama", runs=str(trained_runs), n_samples=40, max_length=48, bootstrap=0)
    result = run_drift(DriftConfig(**base), tmp_path / "all").as_json()
    rows = {r["measure"]: r for r in result["robustness"]["rows"]}
    assert result["layers"] == {"verdicts": "all", "averaged": [0, 1, 2]}
    # The verdicts' drift is the cka_all_layers row, computed independently.
    lora = [r["mean_drift"] for r in result["runs"] if r["method"] == "lora"]
    assert rows["cka_all_layers"]["is_verdict_measure"]
    assert rows["cka_all_layers"]["lora_mean"] == pytest.approx(np.mean(lora), rel=1e-6)
    # LoRA on q/v leaves the embedding output as it was: without it, LoRA's average rises by L / (L - 1).
    assert rows["cka_blocks"]["lora_mean"] == pytest.approx(rows["cka_all_layers"]["lora_mean"] * 3 / 2, rel=1e-6)
    assert all(r["n_pairs"] == 2 and r["ratio"] is not None for r in rows.values())
    # Declared the other way, the verdicts average the blocks, and the rows say so.
    blocks = run_drift(DriftConfig(**base, layers="blocks"), tmp_path / "blocks").as_json()
    assert blocks["layers"]["averaged"] == [1, 2] and [r["layer"] for r in blocks["runs"][0]["layers"]] == [1, 2]
    brows = {r["measure"]: r for r in blocks["robustness"]["rows"]}
    assert brows["cka_blocks"]["is_verdict_measure"]
    assert brows["cka_blocks"]["lora_mean"] == pytest.approx(
        np.mean([r["mean_drift"] for r in blocks["runs"] if r["method"] == "lora"]), rel=1e-6)
    assert blocks["comparison"]["log_ratio"]["gm_ratio"] == pytest.approx(brows["cka_blocks"]["ratio"]["gm_ratio"])


def test_the_report_states_the_layers_and_counts_the_measures_that_agree():
    from lorascope.report.robustness_text import robustness_section
    from tests.helpers import small_drift_record

    runs = [{"method": m, "seed": s, "measures": {**dict.fromkeys(MEASURES, v), "mutual_knn": 1.0 - v}}
            for m, values in (("lora", (0.1, 0.2, 0.15)), ("full", (0.3, 0.35, 0.5))) for s, v in zip((1, 2, 3), values)]
    robustness = {"pair": ["lora", "full"], "runs": runs, "rows": robustness_rows(runs, "lora", "full", "blocks")}
    record = small_drift_record("mrpc", {"lora": 0.15, "full": 0.383}, p_value=0.02,
                                layers={"verdicts": "blocks", "averaged": [1, 2]}, robustness=robustness)
    drift = {"mrpc": record}
    text = robustness_section(drift)
    assert "over the transformer blocks, the embedding output left out" in text
    assert "by 4 of 5 measures" in text  # mutual k-NN was planted the other way round
    assert "**linear CKA, transformer blocks only" in text and "mrpc: lora vs full" in text
    # Each ratio and its interval read as the comparison table's: three significant digits.
    from lorascope.metrics import format_bounds, format_ratio

    for row in robustness["rows"]:
        ratio = row["ratio"]
        assert f"| {format_ratio(ratio['gm_ratio'])} {format_bounds(ratio['gm_ratio_ci'])} |" in text
    assert robustness_section({"mrpc": small_drift_record("mrpc")}) == ""


def test_each_lens_row_names_its_scope_from_the_record():
    from lorascope.report.lenses_text import lens_name
    from tests.helpers import small_drift_record, small_forgetting_record, small_probes_record, study_records

    data = study_records({"drift": {"t": small_drift_record("t", layers={"verdicts": "blocks", "averaged": [1, 2]})},
                          "forgetting": {"t": small_forgetting_record("t", text_source="news.txt")},
                          "probes": {"t": small_probes_record("t", probe_tasks=("mrpc", "rte"))}})
    assert lens_name(data, "t", "drift", "drift") == "drift over the blocks, embedding output left out"
    assert lens_name(data, "t", "forgetting", "forgetting:forgetting") == "forgetting on news.txt"
    assert lens_name(data, "t", "retention", "probes:retention") == "retention on mrpc, rte"
    # Older results, whose drift.json does not record its layers: the bare name.
    assert lens_name(study_records({"drift": {"t": small_drift_record("t")}}), "t", "drift", "drift") == "drift"
