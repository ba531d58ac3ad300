"""A study's sweep: its points as method variants, and the declared rule that selects one per method."""

from __future__ import annotations

import pytest

from lorascope.errors import ConfigError
from lorascope.study.sweep import expand_sweep, select_point, sweep_points, value_slug

BASE = ("lora", "full")


def test_values_become_variant_names():
    assert [value_slug(v) for v in (0.0005, 2.5e-05, 1e-4, 2e-3, 8, True)] == [
        "0p0005", "2p5em05", "0p0001", "0p002", "8", "true"]


def test_each_swept_method_becomes_one_variant_per_point():
    methods, variants = expand_sweep(["lora", "full"], {}, {"lora": {"lr": ["5e-4", 1e-3]}, "full": {"lr": [5e-5, 1e-4]}}, BASE)
    assert methods == ["lora_lr0p0005", "lora_lr0p001", "full_lr5em05", "full_lr0p0001"]
    assert variants["lora_lr0p0005"] == {"method": "lora", "lr": 0.0005}  # the YAML string read as a number
    assert variants["full_lr0p0001"] == {"method": "full", "lr": 1e-4}
    kinds = {m: v["method"] for m, v in variants.items()}
    assert sweep_points({"lora": {"lr": ["5e-4", 1e-3]}}, kinds) == {"lora": ["lora_lr0p0005", "lora_lr0p001"]}


def test_a_swept_variant_keeps_its_own_settings_and_unswept_methods_stay():
    methods, variants = expand_sweep(["lora_r4", "full"], {"lora_r4": {"method": "lora", "lora_r": 4}},
                                     {"lora_r4": {"lr": [1e-3, 2e-3], "lora_alpha": [8, 16]}}, BASE)
    assert methods == ["lora_r4_lr0p001_lora_alpha8", "lora_r4_lr0p001_lora_alpha16",
                       "lora_r4_lr0p002_lora_alpha8", "lora_r4_lr0p002_lora_alpha16", "full"]
    assert variants["lora_r4_lr0p002_lora_alpha16"] == {"method": "lora", "lora_r": 4, "lr": 2e-3, "lora_alpha": 16}
    assert "lora_r4" not in variants


@pytest.mark.parametrize("sweep, key", [
    ({"dora": {"lr": [1e-3, 2e-3]}}, "sweep.dora"),
    ({"lora": {"lr": [1e-3]}}, "sweep.lora.lr"),
    ({"lora": {"lr": 1e-3}}, "sweep.lora.lr"),
    ({"lora": {"lr": [1e-3, 1e-3]}}, "sweep.lora.lr"),
    ({"lora": {"seed": [1, 2]}}, "sweep.lora.seed"),
    ({"lora": {}}, "sweep.lora"),
])
def test_a_bad_sweep_names_its_key(sweep, key):
    with pytest.raises(ConfigError, match=f"^{key}:"):
        expand_sweep(["lora", "full"], {}, sweep, BASE)


def _sel(value, split="selection_split", by="loss"):
    return {"split": split, "by": by, "metric": "loss", "best_value": value}


def test_the_rule_picks_the_best_mean_on_the_selection_split():
    chosen = select_point(["a", "b", "c"], {"a": [_sel(0.5), _sel(0.7)], "b": [_sel(0.4), _sel(0.6)], "c": [_sel(0.9), None]})
    assert chosen["label"] == "b" and chosen["values"]["b"] == pytest.approx(0.5)
    by_metric = select_point(["a", "b"], {"a": [_sel(0.8, by="metric")], "b": [_sel(0.7, by="metric")]})
    assert by_metric["label"] == "a" and "highest" in by_metric["rule"]


def test_the_rule_refuses_points_chosen_on_dev():
    with pytest.raises(ConfigError, match="selection_split"):
        select_point(["a", "b"], {"a": [_sel(0.5, split="dev")], "b": [_sel(0.4)]})


def test_the_report_says_when_the_rule_chose_an_end_of_the_grid():
    from lorascope.report.sweep_text import edge_notes
    from tests.helpers import small_drift_record

    settings = {"lora": (2e-3, 4e-3, 8e-3), "full": (5e-5, 1e-4, 2e-4)}
    table = [{"label": f"{method}_lr{i}", "method": method, "setting": v, "n_seeds": 3, "metric_mean": 0.84 + 0.01 * i,
              "metric_ci": [0.82 + 0.01 * i, 0.86 + 0.01 * i], "drift_gmean": scale * (i + 1),
              "drift_ci": [0.8 * scale * (i + 1), 1.25 * scale * (i + 1)]}
             for method, scale in (("lora", 0.01), ("full", 0.05)) for i, v in enumerate(settings[method])]
    rule = "the point with the lowest mean selection-split loss over seeds"

    def swept(lora: str, full: str):
        """The sweep's drift.json with the rule choosing ``lora`` and ``full`` (the lowest mean loss)."""
        selection = {method: {"label": chosen, "by": "loss", "rule": rule,
                              "values": {r["label"]: 0.40 if r["label"] == chosen else 0.45
                                         for r in table if r["method"] == method}}
                     for method, chosen in (("lora", lora), ("full", full))}
        means = {r["label"]: r["drift_gmean"] for r in table}
        return small_drift_record("sst2", means, frontier={"table": table, "missing": [], "seeds": [1, 2, 3]},
                                  selection=selection, pair=(lora, full))

    assert edge_notes(swept("lora_lr2", "full_lr1")) == [
        "- LoRA's chosen point lora_lr2 is the highest setting swept: the best setting may lie beyond the grid."]
    assert edge_notes(swept("lora_lr1", "full_lr1")) == []
