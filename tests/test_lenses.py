"""The lenses over real run folders: the weight lens and the forgetting lens on tiny Llama runs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lorascope.errors import LorascopeError


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from tests.helpers import train_tiny_runs

    return train_tiny_runs(tmp_path_factory.mktemp("runs"), "sst2", max_length=32)


@pytest.mark.slow
def test_weight_lens_over_runs_reads_lora_and_full_like_for_like(glue_dir, tiny_runs, tmp_path):
    from safetensors.numpy import load_file

    from lorascope.lenses import WeightLensConfig, WeightsRecord, run_weight_lens
    from lorascope.models.load import load_classifier

    result = run_weight_lens(WeightLensConfig(base="tiny-llama", runs=str(tiny_runs)), tmp_path / "w")
    # tiny-llama has 2 layers; LoRA adapted q and v in each: the same 4 matrices for every run.
    assert result.matrices == [f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (0, 1) for p in ("q", "v")]
    assert {(r.method, r.seed) for r in result.runs} == {("lora", 1), ("lora", 2), ("full", 1), ("full", 2)}
    assert all(r.summary.matrices == 4 and r.summary.relative_update > 0 for r in result.runs)
    # The full run's q projection, measured directly from its saved model against the base.
    name = "model.layers.1.self_attn.q_proj.weight"
    base = load_classifier("tiny-llama", ("negative", "positive"), seed=0).model.state_dict()[name].numpy()
    tuned = load_file(str(tiny_runs / "sst2-full-s1" / "model" / "model.safetensors"))[name]
    full1 = next(r for r in result.runs if r.method == "full" and r.seed == 1)
    assert full1.per_matrix[name].relative_update == pytest.approx(
        np.linalg.norm(tuned - base) / np.linalg.norm(base), rel=1e-6)
    # A LoRA r = 8 update has at most rank 8.
    lora1 = next(r for r in result.runs if r.method == "lora" and r.seed == 1)
    assert all(v.stable_rank <= 8 + 1e-9 for v in lora1.per_matrix.values())
    comparison = result.comparison
    paired_t = comparison.measures["relative_update"].paired_t
    assert comparison.seeds == [1, 2] and paired_t is not None and paired_t.n == 2
    assert WeightsRecord.read(tmp_path / "w" / "weights.json") == result  # read back as written
    assert (tmp_path / "w" / "weights.json").is_file()


def test_a_lens_rerun_on_the_same_runs_is_done_and_on_changed_runs_is_redone(glue_dir, tiny_runs, tmp_path, monkeypatch):
    """Same settings, same runs: the stored record, nothing recomputed. A run replaced: computed afresh."""
    import shutil

    import lorascope.lenses.weights as weights
    from lorascope.lenses import WeightLensConfig, run_weight_lens

    runs = shutil.copytree(tiny_runs, tmp_path / "runs")
    cfg = WeightLensConfig(base="tiny-llama", runs=str(runs))
    first = run_weight_lens(cfg, tmp_path / "w")
    computed = []
    real = weights.compare_variants
    monkeypatch.setattr(weights, "compare_variants", lambda *a, **k: computed.append(1) or real(*a, **k))
    assert run_weight_lens(cfg, tmp_path / "w") == first and computed == []
    shutil.rmtree(runs / "sst2-lora-s2")  # a run removed (one retrained or added changes it the same way)
    again = run_weight_lens(cfg, tmp_path / "w")
    assert computed == [1] and len(again.runs) == len(first.runs) - 1
    assert run_weight_lens(cfg, tmp_path / "w", overwrite=True) == again and computed == [1, 1]


def test_weight_lens_of_a_run_compared_with_another_base_is_refused(glue_dir, tiny_runs, tmp_path):
    from lorascope.lenses import WeightLensConfig, run_weight_lens

    with pytest.raises(LorascopeError, match="has no matrix model.layers.0.self_attn.q_proj.weight"):
        run_weight_lens(WeightLensConfig(base="minilm", runs=str(tiny_runs)), tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_weights_command_prints_the_lens_and_refuses_an_empty_folder(glue_dir, tiny_runs, tmp_path):
    from typer.testing import CliRunner

    from lorascope.cli.main import app

    ok = CliRunner().invoke(app, ["weights", "--model", "tiny-llama", "--runs", str(tiny_runs), "--out", str(tmp_path / "w")])
    assert ok.exit_code == 0, ok.output
    assert "intruders" in ok.output and "paired t-test p =" in ok.output
    (tmp_path / "empty").mkdir()
    bad = CliRunner().invoke(app, ["weights", "--model", "tiny-llama", "--runs", str(tmp_path / "empty"),
                                   "--out", str(tmp_path / "w2")])
    assert bad.exit_code == 2 and "no finished training runs" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "w2").exists()


@pytest.mark.slow
def test_forgetting_is_zero_for_the_base_and_lora_at_init_and_measured_for_each_run(glue_dir, tiny_runs, tmp_path):
    from lorascope.lenses import ForgettingConfig, run_forgetting
    from lorascope.lenses.records import ForgettingRecord

    result = run_forgetting(ForgettingConfig(base="tiny-llama", runs=str(tiny_runs), n_texts=24, max_length=32),
                            tmp_path / "f")
    controls = [c.model_dump() for c in result.controls]
    assert [c["name"] for c in controls] == ["base_backbone_reinserted", "lora_at_init",
                                             "chunked_loss_is_full_logits_loss", "lm_head_kept",
                                             "lora_known_update", "backbone_is_the_runs_own"]
    assert all(c["forgetting"] == 0.0 for c in controls[:2]) and all(c["passed"] for c in controls)
    # The trained runs' backbones are the ones their own files hold (tests/test_forgetting_controls.py plants bugs).
    assert set(controls[-1]["per_run"]) == {r.run for r in result.runs}
    assert result.n_texts == 24 and "RTE dev premises" in result.text_source
    assert len(result.runs) == 4
    for r in result.runs:
        s = r.summary
        assert s["forgetting"] == pytest.approx(s["loss"] - result.base_loss) and s["forgetting"] != 0.0
        assert s["perplexity"] == pytest.approx(np.exp(s["loss"]))
    again = run_forgetting(ForgettingConfig(base="tiny-llama", runs=str(tiny_runs), n_texts=24, max_length=32),
                           tmp_path / "f2")
    assert [r.summary for r in again.runs] == [r.summary for r in result.runs]  # deterministic
    assert ForgettingRecord.read(tmp_path / "f" / "forgetting.json") == result  # read back as written
    # The report says what each control checked, and its outcome (every control has its sentence).
    from lorascope.report.lenses_text import FORGETTING_CONTROLS, forgetting_section

    failed = ForgettingRecord.model_validate({**result.model_dump(),
                                             "controls": [*controls[:-1], {**controls[-1], "passed": False}]})
    text = forgetting_section({"sst2": failed})
    for c in controls[:-1]:
        assert f"{FORGETTING_CONTROLS[c['name']]} ({c['name']}: pass)" in text
    assert f"{FORGETTING_CONTROLS['backbone_is_the_runs_own']} (backbone_is_the_runs_own: FAIL)" in text


def test_forgetting_control_fails_when_lora_at_init_is_not_the_base(glue_dir, tiny_runs, tmp_path, monkeypatch):
    """Planted bug: a LoRA 'at initialisation' whose update is not zero must stop the lens."""
    import lorascope.lenses.forgetting as forgetting
    from lorascope.lenses import ForgettingConfig

    real = forgetting.lora_init_backbone_state

    def perturbed(source):
        state = real(source)
        name = next(k for k in state if k.endswith("q_proj.weight"))
        state[name] = state[name] + 1e-3
        return state

    monkeypatch.setattr(forgetting, "lora_init_backbone_state", perturbed)
    with pytest.raises(LorascopeError, match="forgetting control 'lora_at_init' failed"):
        forgetting.run_forgetting(ForgettingConfig(base="tiny-llama", runs=str(tiny_runs), n_texts=8, max_length=32),
                                  tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_forgetting_needs_a_language_model_head(glue_dir, tiny_runs, tmp_path):
    from lorascope.lenses import ForgettingConfig, run_forgetting

    with pytest.raises(LorascopeError, match="has no language-model head"):
        run_forgetting(ForgettingConfig(base="minilm", runs=str(tiny_runs)), tmp_path / "f")


@pytest.mark.slow
def test_forgetting_command_prints_each_run_and_the_controls(glue_dir, tiny_runs, tmp_path):
    from typer.testing import CliRunner

    from lorascope.cli.main import app

    result = CliRunner().invoke(app, ["forgetting", "--model", "tiny-llama", "--runs", str(tiny_runs), "--out",
                                      str(tmp_path / "f"), "n_texts=8", "max_length=32"])
    assert result.exit_code == 0, result.output
    assert "sst2-full-s1" in result.output and "lora_at_init +0.0e+00 pass" in result.output
    bad = CliRunner().invoke(app, ["forgetting", "--model", "minilm", "--runs", str(tiny_runs), "--out", str(tmp_path / "g")])
    assert bad.exit_code == 2 and "has no language-model head" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_probe_retention_is_reproducible_and_zero_for_lora_at_init(glue_dir, tiny_runs, tmp_path):
    from lorascope.lenses import ProbeConfig, run_probe_retention
    from lorascope.lenses.records import ProbesRecord

    cfg = ProbeConfig(base="tiny-llama", runs=str(tiny_runs), probe_tasks=["rte"], n_train=40, n_dev=24, max_length=32)
    result = run_probe_retention(cfg, tmp_path / "p")
    control = result.controls[0]
    assert control.passed and control.measured()["max_feature_difference"] == 0.0
    assert 0.0 <= result.base["rte"] <= 1.0 and len(result.runs) == 4
    for r in result.runs:
        s = r.summary
        assert s["retention_rte"] == pytest.approx(s["accuracy_rte"] - result.base["rte"])
        assert s["retention"] == s["retention_rte"]
    again = run_probe_retention(cfg, tmp_path / "p2")
    assert [r.summary for r in again.runs] == [r.summary for r in result.runs]  # fixed seed: identical
    paired_t = result.comparison.measures["retention"].paired_t
    assert paired_t is not None and paired_t.n == 2
    assert ProbesRecord.read(tmp_path / "p" / "probes.json") == result  # read back as written


def test_probe_accuracy_against_a_direct_fit():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from lorascope.lenses.probes import probe_accuracy

    rng = np.random.default_rng(1)
    x = rng.standard_normal((120, 6))
    y = (x[:, 0] + 0.5 * rng.standard_normal(120) > 0).astype(int)
    scaler = StandardScaler().fit(x[:80])
    direct = LogisticRegression(C=0.5, max_iter=5000).fit(scaler.transform(x[:80]), y[:80])
    expected = float((direct.predict(scaler.transform(x[80:])) == y[80:]).mean())
    assert probe_accuracy(x[:80], y[:80], x[80:], y[80:], 0.5) == expected > 0.7


def test_probing_the_runs_own_task_is_refused(glue_dir, tiny_runs, tmp_path):
    from lorascope.lenses import ProbeConfig, run_probe_retention

    with pytest.raises(LorascopeError, match="'sst2' is the runs' own task"):
        run_probe_retention(ProbeConfig(base="tiny-llama", runs=str(tiny_runs), probe_tasks=["sst2"]), tmp_path / "p")


@pytest.mark.slow
def test_probe_control_fails_when_lora_at_init_is_not_the_base(glue_dir, tiny_runs, tmp_path, monkeypatch):
    """Planted bug: an 'initial' adapter whose B is not zero changes the features, and the control stops the lens."""
    import torch

    import lorascope.lenses.probes as probes
    from lorascope.lenses import ProbeConfig

    real = probes._lora_at_init

    def nonzero_b(source, label_names):
        loaded = real(source, label_names)
        with torch.no_grad():
            for name, p in loaded.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 1.0)
        return loaded

    monkeypatch.setattr(probes, "_lora_at_init", nonzero_b)
    cfg = ProbeConfig(base="tiny-llama", runs=str(tiny_runs), probe_tasks=["rte"], n_train=40, n_dev=24, max_length=32)
    with pytest.raises(LorascopeError, match="probe control 'lora_at_init' failed"):
        probes.run_probe_retention(cfg, tmp_path / "p")


@pytest.mark.slow
def test_probes_command_prints_accuracy_and_retention(glue_dir, tiny_runs, tmp_path):
    from typer.testing import CliRunner

    from lorascope.cli.main import app

    result = CliRunner().invoke(app, ["probes", "--model", "tiny-llama", "--runs", str(tiny_runs), "--probe-task", "rte",
                                      "--out", str(tmp_path / "p"), "n_train=32", "n_dev=16", "max_length=32"],
                                 env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "rte retention" in result.output and "sst2-lora-s2" in result.output
    # Probe accuracies as percentages (the title wraps to the table's width), retention as a difference in points.
    assert re.search(r"rte \(base \d+\.\d%, majority \d+\.\d%\)", " ".join(result.output.split()))
    assert re.search(r"[+-]\d+\.\d points", result.output)
    assert re.search(r"retention: LoRA [+-]\d+\.\d points, full [+-]\d+\.\d points", result.output)
    assert (tmp_path / "p" / "probes.json").is_file()
