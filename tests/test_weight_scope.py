"""The weight lens's scopes: the matrices LoRA adapted (like for like) and the whole backbone, the
intruder count at a matched update size, and a report that names the scope of each claim."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

RNG = np.random.default_rng(7)
LABELS = ("negative", "positive")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from tests.helpers import train_tiny_runs

    return train_tiny_runs(tmp_path_factory.mktemp("runs"), "sst2", max_length=32)


@pytest.fixture(scope="module")
def lens(tiny_runs, tmp_path_factory):
    from lorascope.lenses import WeightLensConfig, run_weight_lens

    # As a dict, the shape of weights.json: these tests read the numbers, tests/test_lenses.py the record's fields.
    return run_weight_lens(WeightLensConfig(base="tiny-llama", runs=str(tiny_runs)), tmp_path_factory.mktemp("w")).model_dump()


@pytest.fixture(scope="module")
def backbone():
    """tiny-llama's pretrained 2-D matrices ``{name: W₀}``, the classifier's fresh head left out, read independently."""
    from lorascope.models.load import load_classifier

    state = load_classifier("tiny-llama", LABELS, seed=0).model.state_dict()
    return {n: t.double().numpy() for n, t in state.items() if t.ndim == 2 and not n.startswith("score.")}


def _run(result, name):
    return next(r for r in result["runs"] if r["run"] == name)


def _lora_deltas(run_dir):
    """A LoRA run's ΔW = (α/r)·B·A per adapted base matrix, straight from its adapter files."""
    from safetensors.numpy import load_file

    cfg = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    tensors = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    scale = cfg["lora_alpha"] / cfg["r"]
    return {k.removeprefix("base_model.model.").removesuffix(".lora_A.weight") + ".weight":
            scale * tensors[k.replace("lora_A", "lora_B")].astype(np.float64) @ a.astype(np.float64)
            for k, a in tensors.items() if k.endswith(".lora_A.weight")}


def _whole(deltas, base):
    return np.sqrt(sum(np.sum(d**2) for d in deltas.values()) / sum(np.sum(w**2) for w in base.values()))


@pytest.mark.slow
def test_the_scope_is_recorded_and_every_backbone_matrix_is_read(glue_dir, lens, backbone):
    scope = lens["scope"]
    # tiny-llama: 2 blocks of 7 matrices and the token embeddings; the score head has no pretrained counterpart.
    assert scope["whole_model_matrices"] == len(backbone) == 15
    assert scope["whole_model_excluded"] == ["score.weight"]
    assert scope["whole_model_embeddings"] == ["model.embed_tokens.weight"]
    assert scope["like_for_like"] == "q_proj, v_proj of 2 layers (4 matrices)"
    assert scope["measures"]["relative_update_whole"] == "whole_model"
    assert scope["measures"]["intruders_matched"] == scope["measures"]["stable_rank"] == "like_for_like"
    for r in lens["runs"]:
        assert r["summary_whole"]["matrices"] == 15 and r["summary"]["matrices"] == 4


def test_a_lora_runs_whole_model_update_is_its_adapted_update_over_the_whole_base(glue_dir, tiny_runs, lens, backbone):
    for seed in (1, 2):
        run = _run(lens, f"sst2-lora-s{seed}")
        deltas = _lora_deltas(tiny_runs / f"sst2-lora-s{seed}")
        assert sorted(deltas) == lens["matrices"]
        expected = _whole(deltas, backbone)  # ΔW is exactly zero outside the adapted matrices
        assert run["summary_whole"]["relative_update"] == pytest.approx(expected, rel=1e-9)
        assert run["summary"]["relative_update_whole"] == run["summary_whole"]["relative_update"]
        assert run["summary_whole"]["adapted_share"] == pytest.approx(1.0, rel=1e-12)
        by_type = run["summary_whole"]["by_type"]
        assert by_type["mlp.up_proj"]["relative_update"] == 0.0 and by_type["self_attn.q_proj"]["relative_update"] > 0
        no_embeddings = {n: w for n, w in backbone.items() if "embed_tokens" not in n}
        assert run["summary_whole"]["relative_update_without_embeddings"] == pytest.approx(
            _whole(deltas, no_embeddings), rel=1e-9)


def _full_deltas(model_dir, base):
    from safetensors.numpy import load_file

    tuned = load_file(str(model_dir / "model.safetensors"))
    return {n: tuned[n].astype(np.float64) - w for n, w in base.items()}


def test_a_full_runs_whole_model_update_moves_with_a_matrix_lora_did_not_adapt(glue_dir, tiny_runs, lens, backbone,
                                                                                 tmp_path):
    """A change planted in an MLP matrix of a full run's saved model moves its whole-model update and
    leaves every like-for-like measure as it was."""
    from safetensors.numpy import load_file, save_file

    from lorascope.lenses import WeightLensConfig, run_weight_lens

    before = _run(lens, "sst2-full-s1")
    assert before["summary_whole"]["relative_update"] == pytest.approx(
        _whole(_full_deltas(tiny_runs / "sst2-full-s1" / "model", backbone), backbone), rel=1e-9)
    assert 0 < before["summary_whole"]["adapted_share"] < 1  # full fine-tuning moved matrices LoRA did not adapt

    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs, runs)
    weights = runs / "sst2-full-s1" / "model" / "model.safetensors"
    tensors = load_file(str(weights))
    name = "model.layers.0.mlp.up_proj.weight"
    assert name not in lens["matrices"]
    tensors[name] = tensors[name] + (0.5 * np.abs(tensors[name]).mean() * RNG.standard_normal(tensors[name].shape)
                                     ).astype(tensors[name].dtype)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    after_result = run_weight_lens(WeightLensConfig(base="tiny-llama", runs=str(runs)), tmp_path / "w").model_dump()
    after = _run(after_result, "sst2-full-s1")

    assert after["summary_whole"]["relative_update"] > before["summary_whole"]["relative_update"]
    assert after["summary_whole"]["relative_update"] == pytest.approx(
        _whole(_full_deltas(runs / "sst2-full-s1" / "model", backbone), backbone), rel=1e-9)
    assert after["summary_whole"]["by_type"]["mlp.up_proj"] != before["summary_whole"]["by_type"]["mlp.up_proj"]
    like_for_like = ("relative_update", "stable_rank", "entropy_rank", "intruders", "intruders_matched",
                     "intruders_by_epsilon")
    assert {k: after["summary"][k] for k in like_for_like} == {k: before["summary"][k] for k in like_for_like}
    assert after["per_matrix"].keys() == before["per_matrix"].keys() == set(lens["matrices"])
    measures_before, measures_after = lens["comparison"]["measures"], after_result["comparison"]["measures"]
    assert measures_after["relative_update"] == measures_before["relative_update"]
    assert measures_after["relative_update_whole"]["full_mean"] > measures_before["relative_update_whole"]["full_mean"]


def test_the_comparison_tests_the_whole_model_update_and_the_matched_intruders(glue_dir, lens):
    measures = lens["comparison"]["measures"]
    for key in ("relative_update_whole", "relative_update_whole_without_embeddings", "intruders_matched"):
        assert measures[key]["lora_n"] == measures[key]["full_n"] == 2 and measures[key]["sign_flip"] is not None
    assert measures["relative_update_whole"]["paired_t"]["n"] == 2
    lora = [_run(lens, f"sst2-lora-s{s}")["summary"]["relative_update"] for s in (1, 2)]
    full = [_run(lens, f"sst2-full-s{s}")["summary"]["relative_update"] for s in (1, 2)]
    # The common size is the geometric mean of the compared runs' like-for-like relative updates.
    assert lens["matched_update"]["relative_update"] == pytest.approx(np.exp(np.mean(np.log(lora + full))), rel=1e-12)


def test_the_lenses_matched_count_is_the_count_of_the_update_rescaled_to_the_common_size(glue_dir, tiny_runs, lens,
                                                                                          backbone):
    from lorascope.weight_update import matched_intruders

    target = lens["matched_update"]["relative_update"]
    deltas = {"sst2-lora-s1": _lora_deltas(tiny_runs / "sst2-lora-s1"),
              "sst2-full-s1": _full_deltas(tiny_runs / "sst2-full-s1" / "model", backbone)}
    for run_name, run_deltas in deltas.items():
        run = _run(lens, run_name)
        for name in lens["matrices"]:
            assert run["per_matrix"][name]["intruders_matched"] == matched_intruders(
                backbone[name], run_deltas[name], target, top_k=10, epsilon=0.5)
        assert run["summary"]["intruders_matched"] == sum(v["intruders_matched"] for v in run["per_matrix"].values())


def test_the_matched_intruder_count_does_not_depend_on_the_size_of_the_update():
    """The plain count grows with ‖ΔW‖; the matched count is the same for ΔW and any positive multiple of it."""
    from lorascope.weight_update import matched_intruders, matrix_update, rescaled_update

    w0 = RNG.standard_normal((96, 96))
    u, v = RNG.standard_normal(96), RNG.standard_normal(96)
    delta = np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v)) * np.linalg.norm(w0, 2)  # a direction W₀ lacks
    delta += 0.05 * RNG.standard_normal((96, 96))
    plain = [matrix_update(w0, w0 + c * delta).intruders for c in (0.01, 3.0)]
    assert plain[0] < plain[1]  # the plain count grows with the update's size
    for target in (0.05, 0.5, 2.0):
        counts = {matched_intruders(w0, c * delta, target) for c in (1e-4, 0.01, 1.0, 3.0, 1e4)}
        assert len(counts) == 1, (target, counts)
        scaled = rescaled_update(w0, 1e3 * delta, target)
        assert np.linalg.norm(scaled) / np.linalg.norm(w0) == pytest.approx(target, rel=1e-12)
        np.testing.assert_allclose(scaled, rescaled_update(w0, delta, target), rtol=1e-10)
    own_size = np.linalg.norm(3.0 * delta) / np.linalg.norm(w0)
    assert matched_intruders(w0, delta, own_size) == plain[1]  # at the update's own size it is the plain count...
    assert matched_intruders(w0, np.zeros_like(w0), 1.0) == 0  # ...and a zero update has no direction to count


def _record(like: int, layers: int, whole: int, lora=(0.010, 0.011, 0.009), full=(0.002, 0.0021, 0.0019),
            lora_whole=(0.0011, 0.0012, 0.0010), full_whole=(0.0019, 0.0021, 0.0018)):
    """A weights.json as the lens writes it, for ``like`` q/v matrices over ``layers`` blocks and a
    backbone of ``whole`` matrices (one of them the embeddings); per-seed relative updates given."""
    from lorascope.lenses import WeightsRecord
    from lorascope.lenses.compare import compare_variants
    from tests.helpers import weight_run, weight_scope

    names = [f"model.layers.{i}.self_attn.{p}_proj.weight" for i in range(layers) for p in ("q", "v")][:like]
    runs = []
    for method, sizes, whole_sizes in (("lora", lora, lora_whole), ("full", full, full_whole)):
        for seed, (size, whole_size) in enumerate(zip(sizes, whole_sizes), start=1):
            runs.append(weight_run("t", method, seed, names, whole, relative_update=size, stable_rank=2.0 + seed,
                                   entropy_rank=4.0 + seed, intruders=seed, intruders_matched=0,
                                   relative_update_whole=whole_size,
                                   relative_update_whole_without_embeddings=1.5 * whole_size,
                                   intruders_by_epsilon={"0.5": seed}))
    measures = ("relative_update", "stable_rank", "entropy_rank", "intruders", "intruders_matched",
                "relative_update_whole", "relative_update_whole_without_embeddings")
    return WeightsRecord.create(
        config={"top_k": 10, "epsilon": 0.5}, matrices=names, matrices_by_variant={"lora": names},
        scope=weight_scope(names, whole, ["model.embed_tokens.weight"]),
        matched_update={"relative_update": 0.0045, "labels": ["lora", "full"], "runs": 6},
        runs=runs, comparison=compare_variants(runs, measures, {"lora": "lora", "full": "full"}))


def test_the_report_names_the_scope_of_each_weight_claim_from_the_record():
    from lorascope.report.lenses_text import lenses_summary, weights_section
    from tests.helpers import small_drift_record, study_records

    for like, layers, whole in ((12, 6, 43), (60, 30, 211)):
        w = _record(like, layers, whole)
        text = weights_section({"sst2": w})
        sentence = next(line for line in text.splitlines() if line.startswith("By weight update"))
        assert sentence.startswith(f"By weight update on the matrices LoRA adapts (q_proj, v_proj: {like} matrices), "
                                   "full FT moved less (LoRA 0.01, full FT 0.002; paired t p = ")
        assert f"; over the whole model ({whole} matrices, embeddings included), LoRA moved less (" in sentence
        assert f"; without the embeddings ({whole - 1} matrices), LoRA moved less (" in sentence
        assert f"Over the whole model ({whole} matrices, embeddings included):" in text
        assert "intruder dimensions at ‖ΔW‖/‖W₀‖ = 0.0045 per matrix (sum over matrices)" in text

        drift = {"sst2": small_drift_record("sst2", {"lora": 0.01, "full": 0.05}, p_value=0.001)}
        side = lenses_summary(study_records({"drift": drift, "weights": {"sst2": w}}))
        said = next(line for line in side.splitlines() if line.startswith("The lenses"))
        assert (f"full FT stays closer by weight update ‖ΔW‖/‖W₀‖ on the matrices LoRA adapts (q_proj, v_proj: "
                f"{like} matrices)") in said
        assert f"LoRA stays closer by representation drift (1 − CKA), weight update ‖ΔW‖/‖W₀‖ over the whole model " \
               f"({whole} matrices, embeddings included)" in said


def test_the_weight_report_of_a_lens_run_names_its_recorded_counts(glue_dir, lens):
    from lorascope.lenses import WeightsRecord
    from lorascope.report.lenses_text import weights_section

    text = weights_section({"sst2": WeightsRecord.model_validate(lens)})
    n_like, n_whole = len(lens["matrices_by_variant"]["lora"]), lens["scope"]["whole_model_matrices"]
    sentence = next(line for line in text.splitlines() if line.startswith("By weight update"))
    assert f"on the matrices LoRA adapts (q_proj, v_proj: {n_like} matrices)" in sentence
    assert f"over the whole model ({n_whole} matrices, embeddings included)" in sentence


def test_a_weights_json_from_before_the_whole_model_scope_is_refused_in_one_line(tmp_path):
    import json

    from lorascope.errors import DataError
    from lorascope.lenses import WeightsRecord

    # Written before the weight lens recorded its scope: the claims it would support cannot name their matrices.
    old = {k: v for k, v in _record(12, 6, 43).as_json().items() if k not in ("scope", "kind", "schema_version")}
    (tmp_path / "weights.json").write_text(json.dumps(old), encoding="utf-8")
    with pytest.raises(DataError) as err:
        WeightsRecord.read(tmp_path / "weights.json")
    assert str(err.value).startswith(str(tmp_path / "weights.json")) and "scope" in str(err.value)
    assert "\n" not in str(err.value)
