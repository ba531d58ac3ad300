"""A study with a learning-rate sweep: every point trained, each method's point selected by the
declared rule on the selection split, the verdicts on that pair, the frontier beside them."""

from __future__ import annotations

import json

import pytest
import yaml

from lorascope.errors import ConfigError
from lorascope.study import load_study, run_study
from lorascope.study.sweep import select_point

SWEEP = {"lora": {"lr": ["5e-3", "2e-2"]}, "full": {"lr": [1e-4, 1e-3]}}


def _study(tmp_path, **extra):
    cfg = {"name": "swept", "model": "tiny-llama", "tasks": ["sst2"], "methods": ["lora", "full"], "seeds": [1, 2, 3],
           "out": str(tmp_path / "study"), "stages": ["train", "drift", "report"], "sweep": SWEEP,
           "train": {"train_limit": 40, "eval_limit": 16, "epochs": 1, "batch_size": 8, "max_length": 32,
                     "selection_split": 0.25},
           "drift": {"n_samples": 16, "max_length": 32, "bootstrap": 50}, **extra}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_sweep_needs_a_selection_split(tmp_path):
    path = _study(tmp_path)
    data = yaml.safe_load(path.read_text())
    del data["train"]["selection_split"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="sweep: set train.selection_split"):
        load_study(path)


def test_the_expanded_study_reads_back_as_it_was_stored(tmp_path):
    from lorascope.config import build_config, config_to_dict
    from lorascope.study.config import StudyConfig

    cfg = load_study(_study(tmp_path))
    assert cfg.methods == ["lora_lr0p005", "lora_lr0p02", "full_lr0p0001", "full_lr0p001"]
    again = build_config(StudyConfig, config_to_dict(cfg))
    assert (again.methods, again.variants) == (cfg.methods, cfg.variants)
    assert cfg.train_config("sst2", "lora_lr0p02", 1).lr == pytest.approx(0.02)


@pytest.mark.slow
def test_a_swept_study_compares_the_selected_points_and_draws_the_frontier(glue_dir, tmp_path):
    cfg = load_study(_study(tmp_path))
    out = run_study(cfg)
    runs = sorted(p.name for p in (out / "train").iterdir())
    assert len(runs) == 12 and "sst2-lora_lr0p02-s3" in runs
    drift = json.loads((out / "drift" / "sst2" / "drift.json").read_text())
    # The pair is what the declared rule picks from the runs' selection-split values, recomputed here.
    records = {}
    for name in runs:
        record = json.loads((out / "train" / name / "metrics.json").read_text())
        assert record["selection"]["split"] == "selection_split"
        records.setdefault(record["variant"], []).append(record["selection"])
    for kind in ("lora", "full"):
        labels = [m for m in cfg.methods if m.startswith(kind)]
        assert drift["selection"][kind]["label"] == select_point(labels, records)["label"]
    assert drift["primary"] == drift["selection"]["lora"]["label"]
    assert set(drift["comparisons"]) == {drift["primary"]}
    assert drift["comparison"]["verdicts"], "the selected pair is compared"
    frontier = drift["frontier"]
    assert [r["label"] for r in frontier["table"]] == ["full_lr0p0001", "full_lr0p001", "lora_lr0p005", "lora_lr0p02"]
    assert all(r["n_seeds"] == 3 for r in frontier["table"])
    assert frontier["matched"]["outcome"] in ("less", "more", "undecided", "no_overlap")
    assert frontier["interaction"]["df"] == [1, 8]
    # The study's family spans its verdicts, corrected once for the whole study.
    assert all(v.get("family", {}).get("complete") for v in drift["comparison"]["verdicts"].values() if "status" in v)


def test_points_are_ordered_by_their_number_or_by_their_place(tmp_path):
    from lorascope.study.sweep_drift import frontier_points

    cfg = load_study(_study(tmp_path, sweep={"lora": {"lora_rslora": [False, True]}, "full": {"lr": [1e-4, 1e-3]}}))
    assert frontier_points(cfg) == {"lora_lora_rslorafalse": {"method": "lora", "setting": 0.0},
                                    "lora_lora_rsloratrue": {"method": "lora", "setting": 1.0},
                                    "full_lr0p0001": {"method": "full", "setting": 1e-4},
                                    "full_lr0p001": {"method": "full", "setting": 1e-3}}


@pytest.mark.parametrize("extra, message", [
    ({"sweep_seeds": [1, 9]}, "sweep_seeds: expected distinct seeds out of seeds"),
    ({"sweep_seeds": [1, 1]}, "sweep_seeds: expected distinct seeds"),
    ({"sweep_seeds": [1], "sweep": {}}, "sweep_seeds: only with a sweep"),
])
def test_bad_sweep_seeds_name_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_study(_study(tmp_path, **extra))


def test_with_sweep_seeds_the_points_are_planned_on_those_seeds_until_one_is_chosen(tmp_path):
    from lorascope.study.units import train_units

    cfg = load_study(_study(tmp_path, sweep_seeds=[1, 2]))
    units = train_units(cfg, out=tmp_path / "study")
    assert len(units) == 8 and {u.seed for u in units} == {1, 2}


@pytest.mark.slow
def test_sweep_seeds_train_the_chosen_points_with_every_seed(glue_dir, tmp_path):
    from lorascope.study.units import train_units

    cfg = load_study(_study(tmp_path, sweep_seeds=[1, 2], stages=["train", "drift", "weights", "report"]))
    out = run_study(cfg)
    drift = json.loads((out / "drift" / "sst2" / "drift.json").read_text())
    chosen = {drift["selection"][kind]["label"] for kind in ("lora", "full")}
    runs = sorted(p.name for p in (out / "train").iterdir())
    # 4 points x 2 sweep seeds, then the 2 chosen points with seed 3 as well.
    assert len(runs) == 10
    assert {r.rsplit("-s", 1)[0].split("-", 1)[1] for r in runs if r.endswith("-s3")} == chosen
    # Chosen on the sweep seeds alone, by the declared rule.
    records = {}
    for name in runs:
        record = json.loads((out / "train" / name / "metrics.json").read_text())
        if record["seed"] in (1, 2):
            records.setdefault(record["variant"], []).append(record["selection"])
    for kind in ("lora", "full"):
        labels = [m for m in cfg.methods if m.startswith(kind)]
        assert drift["selection"][kind]["label"] == select_point(labels, records)["label"]
    # The verdicts compare every seed of the chosen pair; the frontier, the sweep seeds of every point.
    assert sorted(drift["methods"][drift["primary"]]["seeds"]) == [1, 2, 3]
    assert all(r["n_seeds"] == 2 for r in drift["frontier"]["table"]) and drift["frontier"]["seeds"] == [1, 2]
    assert len(train_units(cfg, out=out)) == 10, "the grid is complete: a rerun trains nothing new"
    # The lenses compare the same chosen pair, on every seed.
    weights = json.loads((out / "weights" / "sst2" / "weights.json").read_text())["comparison"]
    assert (weights["primary"], weights["reference"]) == (drift["primary"], drift["selection"]["full"]["label"])
    assert weights["seeds"] == [1, 2, 3] and weights["measures"]["intruders"]["full_n"] == 3
