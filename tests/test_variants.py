"""Method variants: named LoRA settings (rank, targets, rsLoRA, DoRA) trained, analysed and reported beside full FT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lorascope.errors import ConfigError
from tests.helpers import prose_faults

VARIANTS = {
    "lora_r2": {"method": "lora", "lora_r": 2, "lora_alpha": 4},
    "lora_dora": {"method": "lora", "lora_r": 4, "lora_alpha": 8, "lora_dora": True},
    "lora_all": {"method": "lora", "lora_targets": "all-linear", "lora_rslora": True},
}


def study_file(tmp_path: Path, **extra) -> Path:
    cfg = {
        "name": "variants", "model": "tiny-llama", "tasks": ["sst2"], "seeds": [1, 2],
        "methods": ["lora", "lora_r2", "lora_dora", "lora_all", "full"], "variants": VARIANTS,
        "out": str(tmp_path / "study"),
        "stages": ["train", "drift", "weights", "forgetting", "report"],
        "train": {"train_limit": 24, "eval_limit": 16, "epochs": 1, "batch_size": 8, "max_length": 32},
        "method_train": {"full": {"lr": 1e-3}},
        "drift": {"n_samples": 16, "max_length": 32, "bootstrap": 50},
        "forgetting": {"n_texts": 4, "max_length": 32},
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_settings_added_later_are_stored_only_when_set():
    """A plain run's stored config is what it was before variants existed, so its folder is still reused."""
    from lorascope.config import config_to_dict
    from lorascope.train import TrainConfig

    plain = config_to_dict(TrainConfig(method="lora"))
    assert not {"variant", "lora_rslora", "lora_dora"} & set(plain)
    variant = config_to_dict(TrainConfig(method="lora", variant="lora_r2", lora_dora=True))
    assert variant["variant"] == "lora_r2" and variant["lora_dora"] is True and "lora_rslora" not in variant
    assert TrainConfig(method="lora", variant="lora_r2").label == "lora_r2" and TrainConfig(method="full").label == "full"


def test_study_variants_layer_their_settings(tmp_path):
    from lorascope.study import load_study
    from lorascope.study.config import hpo_config

    cfg = load_study(study_file(tmp_path, method_train={"lora_r2": {"lr": 7e-3}}, stages=["hpo", "train"]))
    unit = cfg.train_config("sst2", "lora_r2", 1)
    assert (unit.method, unit.variant, unit.lora_r, unit.lora_alpha, unit.lr) == ("lora", "lora_r2", 2, 4, 7e-3)
    dora = cfg.train_config("sst2", "lora_dora", 1)
    assert dora.lora_dora and dora.lora_r == 4
    plain = cfg.train_config("sst2", "lora", 1)
    assert plain.variant is None and plain.lora_r == 8 and not plain.lora_dora
    # A variant's rank is what the variant is: its search keeps it fixed (the protocol's space fixes r = 8).
    search = hpo_config(cfg, "sst2", "lora_r2")
    assert search.search_space().params["lora_r"].to_dict() == {"value": 2}
    assert search.resolved_study_name() != hpo_config(cfg, "sst2", "lora").resolved_study_name()
    assert hpo_config(cfg, "sst2", "lora").search_space().params["lora_r"].to_dict() == {"value": 8}


@pytest.mark.parametrize(("change", "message"), [
    ({"methods": ["lora", "lora_r4"]}, "'lora_r4' is neither lora, full nor a name under variants"),
    ({"variants": {"lora": {"method": "lora", "lora_r": 4}}}, "variants.lora: 'lora' is a method"),
    ({"variants": {"lora-r4": {"method": "lora"}}}, "variants.lora-r4: a variant name is lower-case"),
    ({"variants": {"big": {"method": "qlora"}}}, "variants.big.method: expected 'lora' or 'full'"),
    ({"variants": {"big": {"method": "lora", "lora_r": 0}}, "methods": ["big"]}, "lora_r"),
])
def test_bad_variants_are_refused_naming_the_key(tmp_path, change, message):
    from lorascope.study import load_study

    with pytest.raises(ConfigError, match=message):
        load_study(study_file(tmp_path, **change))


def test_labels_are_compared_with_full_in_a_stable_order():
    from lorascope.variants import compared_labels, display_name, primary_label

    methods = {"full": "full", "lora_r64": "lora", "full_slow": "full", "lora_r8": "lora", "lora_r4": "lora"}
    assert compared_labels(methods) == ["lora_r4", "lora_r8", "lora_r64", "full_slow"]
    assert primary_label(methods) == "lora_r4"
    assert primary_label({**methods, "lora": "lora"}) == "lora"
    assert primary_label({"full": "full"}) is None
    assert display_name("lora_r4") == "LoRA (lora_r4)" and display_name("lora") == "LoRA"


def test_all_linear_targets_leave_out_the_classification_head():
    from lorascope.models.adapt import all_linear_targets
    from lorascope.models.load import load_classifier

    model = load_classifier("tiny-llama", ("negative", "positive"), seed=0).model
    assert all_linear_targets(model) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.mark.slow
def test_variants_study_trains_compares_and_reports_every_variant(glue_dir, tmp_path):
    import numpy as np

    from lorascope.models.load import load_classifier, load_run
    from lorascope.run_folder import RunFolder
    from lorascope.study import load_study, run_study

    out = run_study(load_study(study_file(tmp_path)))
    train = out / "train"
    records = {r.name: r.record() for r in RunFolder.finished_under(train)}
    assert len(records) == 10 and all(r.ok for r in records.values())
    assert records["sst2-lora_r2-s1"].label == "lora_r2" and records["sst2-lora-s1"].label == "lora"
    adapter = {name: json.loads((train / name / "adapter" / "adapter_config.json").read_text())
               for name in ("sst2-lora_r2-s1", "sst2-lora_dora-s1", "sst2-lora_all-s1")}
    assert adapter["sst2-lora_r2-s1"]["r"] == 2 and adapter["sst2-lora_dora-s1"]["use_dora"] is True
    assert adapter["sst2-lora_all-s1"]["use_rslora"] is True
    assert set(adapter["sst2-lora_all-s1"]["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                    "up_proj", "down_proj"}

    drift = json.loads((out / "drift" / "sst2" / "drift.json").read_text())
    assert drift["primary"] == "lora" and list(drift["comparisons"]) == ["lora", "lora_all", "lora_dora", "lora_r2"]
    assert drift["comparison"] == drift["comparisons"]["lora"]
    assert drift["variants"]["lora_r2"]["lora_r"] == 2 and drift["variants"]["full"]["method"] == "full"
    assert set(drift["methods"]) == {"lora", "lora_r2", "lora_dora", "lora_all", "full"}

    weights = json.loads((out / "weights" / "sst2" / "weights.json").read_text())
    assert len(weights["matrices_by_variant"]["lora"]) == 4 and len(weights["matrices_by_variant"]["lora_all"]) == 14
    full1 = next(r for r in weights["runs"] if r["run"] == "sst2-full-s1")
    assert full1["summary_by_variant"]["lora_all"]["matrices"] == 14 and full1["summary"]["matrices"] == 4
    assert weights["comparison"]["variants"]["lora_all"]["measures"]["relative_update"]["full_mean"] != \
        weights["comparison"]["measures"]["relative_update"]["full_mean"]
    # DoRA's ΔW as the lens computes it is the weight PEFT's own merge writes.
    name = "model.layers.0.self_attn.q_proj.weight"
    base = load_classifier("tiny-llama", ("negative", "positive"), seed=0).model.state_dict()[name].numpy()
    merged = load_run(train / "sst2-lora_dora-s1").model.merge_and_unload().state_dict()[name].numpy()
    dora1 = next(r for r in weights["runs"] if r["run"] == "sst2-lora_dora-s1")
    assert dora1["per_matrix"][name]["relative_update"] == pytest.approx(
        np.linalg.norm(merged - base) / np.linalg.norm(base), rel=1e-5)

    forgetting = json.loads((out / "forgetting" / "sst2" / "forgetting.json").read_text())
    assert set(forgetting["comparison"]["variants"]) == {"lora", "lora_all", "lora_dora", "lora_r2"}

    report = (out / "report" / "report.md").read_text()
    assert prose_faults(report) == []
    section = report.split("## Method variants", 1)[1].split("\n## ", 1)[0]
    for label, settings in (("lora_r2", "r 2, α 4, default targets"), ("lora_dora", "r 4, α 8, default targets, DoRA"),
                            ("lora_all", "r 8, α 16, all-linear, rsLoRA")):
        assert f"| {label} | {settings} |" in section
        assert f"- {label}: " in section
    assert "![lenses_by_rank](figures/lenses_by_rank.png)" in section
    assert (out / "report" / "figures" / "lenses_by_rank.png").is_file()


@pytest.mark.slow
def test_bench_measures_peft_paths_for_a_dora_adapter_and_skips_the_runtime(glue_dir, tmp_path):
    from lorascope.bench.run import _feasible
    from lorascope.serve.adapter import runtime_refusal
    from lorascope.serve.sources import AdapterSource
    from lorascope.train import TrainConfig, run_train

    run = tmp_path / "dora"
    assert run_train(TrainConfig(task="sst2", model="tiny-llama", lora_dora=True, lora_r=4, train_limit=16, eval_limit=8,
                                 epochs=1, batch_size=8, max_length=32), run, progress=False).ok
    assert "DoRA (use_dora=true) is not supported by the serving runtime" in runtime_refusal(run / "adapter")
    source = AdapterSource("a", run / "adapter", "sst2", None, None, "run")
    keep, skipped = _feasible(["lora_merged", "lora_separate", "runtime_single", "peft_switch2"], [source])
    assert keep == ["lora_merged", "lora_separate"] and "DoRA" in skipped["runtime_single"]
    assert skipped["peft_switch2"] == "needs 2 adapters, 1 given"


def test_a_variant_cell_writes_its_p_as_every_other_p():
    """The variants table's "variant vs full (p …)" writes p as the rest of the report does (format_p: three
    significant digits), and leaves it out where the models did not learn."""
    from lorascope.report.variants_text import _cell

    assert _cell((0.2843, 0.3258, 0.033912), 1) == "0.2843 vs 0.3258 (p 0.0339)"
    assert _cell((0.005, 0.0021, 0.0572), 100) == "0.5 vs 0.21 (p 0.0572)"
    assert _cell((0.2843, 0.3258, 0.033912), 1, learned=False) == "0.2843 vs 0.3258" and _cell(None, 1) == "–"
