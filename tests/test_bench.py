"""The serving benchmark: every strategy × batch size measured, ratios to merged, checks, bad input.

A tiny run on the 2-layer random ``tiny-llama`` with three synthetic adapters over real GLUE dev
rows; its numbers are meaningless as latencies but every path and every output field is exercised.
"""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
import typer
from typer.testing import CliRunner

from lorascope.bench import STRATEGIES, BenchConfig, run_bench
from lorascope.bench.record import BenchRecord
from lorascope.cli.serving import register
from lorascope.config import build_config
from lorascope.errors import ConfigError, LorascopeError
from lorascope.models.shapes import build_random_llama, tinyllama_shape_config
from lorascope.serve.http.loadgen import check_loopback
from lorascope.serve.sources import parse_named_paths, resolve_adapter, resolve_full_model

SIZES = [1, 3]
TINY = dict(model="tiny-llama", batch_sizes=SIZES, warmup=1, requests=4, bootstrap_resamples=200, check_rows=6, threads=1)


# Benchmarks that load and time models are in the slow tier; the config and error tests are fast.
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    from tests.conftest import GLUE_DIR

    if not (GLUE_DIR / "SST-2" / "dev.tsv").is_file():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    out = tmp_path_factory.mktemp("bench") / "out"
    record = run_bench(BenchConfig(**TINY, data_dir=str(GLUE_DIR)), out, show_progress=False)
    assert BenchRecord.read(out / "bench.json") == record  # it returns what it wrote
    return out, record.as_json()


@pytest.mark.slow
def test_every_strategy_and_batch_size_is_measured(tiny_bench):
    out, result = tiny_bench
    assert json.loads((out / "bench.json").read_text())["results"] == json.loads(json.dumps(result["results"]))
    assert not (out.parent / "out.partial").exists()
    pairs = {(r["strategy"], r["batch_size"]) for r in result["results"]}
    assert pairs == {(s, b) for s in STRATEGIES for b in SIZES}
    with (out / "bench.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {(r["strategy"], int(r["batch_size"])) for r in rows} == pairs
    for r in result["results"]:
        assert r["n"] == TINY["requests"]
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["ci_low_ms"] <= r["mean_ms"] <= r["ci_high_ms"]
        assert r["throughput_rps"] == pytest.approx(r["batch_size"] * 1e3 / r["mean_ms"])
    assert result["synthetic_adapters"] and result["full_ft"]["stand_in"]
    assert [a["name"] for a in result["adapters"]] == ["sst2", "mrpc", "rte"]
    assert result["skipped"] == {}


@pytest.mark.slow
def test_ratios_are_latency_over_merged_latency_at_the_same_batch_size(tiny_bench):
    _, result = tiny_bench
    merged = {r["batch_size"]: r["mean_ms"] for r in result["results"] if r["strategy"] == "lora_merged"}
    for r in result["results"]:
        assert r["ratio_to_merged"] == pytest.approx(r["mean_ms"] / merged[r["batch_size"]])
        assert r["ratio_ci_low"] <= r["ratio_to_merged"] <= r["ratio_ci_high"]
        if r["strategy"] == "lora_merged":
            assert r["ratio_to_merged"] == 1.0 and r["ratio_ci_low"] == r["ratio_ci_high"] == 1.0


@pytest.mark.slow
def test_correctness_checks_pass_for_every_adapter_serving_strategy(tiny_bench):
    _, result = tiny_bench
    checked = {c["strategy"]: c for c in result["checks"]}
    assert set(checked) == set(STRATEGIES) - {"full_ft"}
    assert result["checks_passed"]
    for name, c in checked.items():
        assert c["max_abs_diff"] <= (1e-5 if name.startswith("peft_") else 1e-4)
        assert c["agreement"] == 1.0
    assert checked["peft_switch3"]["rows"] == 3 * checked["lora_separate"]["rows"]


@pytest.mark.slow
def test_resources_are_reported(tiny_bench):
    _, result = tiny_bench
    for s in result["strategies"].values():
        assert s["load_s"] > 0 and s["memory"]["model_tensor_bytes"] > 0
    held = {name: s["memory"]["model_tensor_bytes"] for name, s in result["strategies"].items()}
    assert held["full_ft"] == held["lora_merged"] < held["lora_separate"] < held["peft_switch2"] < held["peft_switch3"]
    # The runtime holds the base plus one merged copy of the adapted weights per cached adapter.
    assert held["runtime_single"] < held["runtime_switch3"] == held["runtime_mixed3"]
    adapter = result["adapters"][0]["weights_bytes"]
    assert 0 < adapter < result["full_ft"]["bytes"]
    assert result["strategies"]["peft_switch3"]["artifact_bytes"] == sum(a["weights_bytes"] for a in result["adapters"])
    assert result["memory"]["peak_rss_bytes"] > 0


@pytest.mark.slow
def test_given_adapter_folders_and_skipped_strategies(tiny_bench, tmp_path, glue_dir):
    out, _ = tiny_bench
    cfg = BenchConfig(**{**TINY, "batch_sizes": [2], "strategies": ["lora_separate", "runtime_mixed3"]},
                      adapters={"sst2": str(out / "synthetic_adapters" / "sst2")})
    result = run_bench(cfg, tmp_path / "one", show_progress=False).as_json()
    assert [r["strategy"] for r in result["results"]] == ["lora_merged", "lora_separate"]
    assert "runtime_mixed3" in result["skipped"] and not result["synthetic_adapters"]
    other = cfg.model_copy(update={"batch_sizes": [1]})
    with pytest.raises(LorascopeError, match="batch_sizes"):  # made with other settings: the key is named
        run_bench(other, tmp_path / "one", show_progress=False)


@pytest.mark.slow
def test_run_folders_are_recognised(tiny_bench, tmp_path):
    out, _ = tiny_bench
    run = tmp_path / "run"
    shutil.copytree(out / "synthetic_adapters" / "mrpc", run / "adapter")
    (run / "adapter" / "lorascope_adapter.json").unlink()
    (run / "metrics.json").write_text(json.dumps({"status": "ok", "task": "mrpc", "label_names": ["no", "yes"]}))
    source = resolve_adapter("para", run)
    assert (source.task, source.label_names, source.origin) == ("mrpc", ("no", "yes"), "run")
    assert resolve_adapter("para", run / "adapter").task == "mrpc"
    (tmp_path / "full" / "model").mkdir(parents=True)
    (tmp_path / "full" / "model" / "config.json").write_text("{}")
    (tmp_path / "full" / "metrics.json").write_text(json.dumps({"status": "ok", "task": "mrpc"}))
    assert resolve_full_model(tmp_path / "full")[0] == tmp_path / "full" / "model"
    with pytest.raises(LorascopeError, match="full fine-tuning run"):
        resolve_adapter("x", tmp_path / "full")
    with pytest.raises(LorascopeError, match="LoRA run"):
        resolve_full_model(run)
    with pytest.raises(LorascopeError, match="not a folder"):
        resolve_adapter("x", tmp_path / "missing")


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"strategies": ["lora_merged", "vllm"]}, "unknown strategy 'vllm'"),
        ({"batch_sizes": [0]}, "batch_sizes"),
        ({"requests": 1}, "requests"),
        ({"adapters": {"a": "x", "b": "x", "c": "x", "d": "x"}}, "at most 3 adapters"),
        ({"adapters": {"../evil": "x"}}, "adapter name"),
        ({"dtype": "fp16"}, "dtype"),
        ({"batchsize": 4}, "unknown key 'batchsize'"),
    ],
)
def test_bad_config_is_an_error_naming_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_config(BenchConfig, override)


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(LorascopeError, match="adapter_tasks"):
        run_bench(BenchConfig(**TINY, adapter_tasks={"ghost": "sst2"}), tmp_path / "a", show_progress=False)
    with pytest.raises(LorascopeError, match="not a folder"):
        run_bench(BenchConfig(**TINY, adapters={"sst2": str(tmp_path / "missing")}), tmp_path / "a", show_progress=False)
    assert list(tmp_path.iterdir()) == []  # bad input leaves no output folder behind
    with pytest.raises(LorascopeError, match="expected name=path"):
        parse_named_paths(["sst2"])
    with pytest.raises(LorascopeError, match="given twice"):
        parse_named_paths(["a=x", "a=y"])


def test_strategies_are_listed_in_table_order_with_the_baseline():
    assert BenchConfig(strategies=["runtime_mixed3", "full_ft"]).strategies == ["full_ft", "lora_merged", "runtime_mixed3"]


def test_tinyllama_shape_constructs_with_the_reference_shapes():
    model = build_random_llama(tinyllama_shape_config(2, 102), seed=0, dtype=torch.bfloat16, device="meta")
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
            config.intermediate_size, config.vocab_size) == (22, 2048, 32, 4, 5632, 32000)
    assert 1.0e9 < sum(p.numel() for p in model.parameters()) < 1.1e9  # 1.1B minus the LM head


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:80", "http://127.9.9.9"])
def test_load_generator_accepts_loopback(url):
    check_loopback(url)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://example.com", "ftp://127.0.0.1", "http://0.0.0.0:80"])
def test_load_generator_refuses_other_hosts(url):
    with pytest.raises(ConfigError):
        check_loopback(url)


@pytest.mark.slow
def test_cli_bench_runs_and_reports_errors_on_one_line(tmp_path, glue_dir):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    ok = runner.invoke(app, ["bench", "--model", "tiny-llama", "--out", str(tmp_path / "b"), "--batch-size", "2",
                             "--threads", "1", "warmup=0", "requests=2", "bootstrap_resamples=50",
                             "strategies=[lora_merged,runtime_single]"])
    assert ok.exit_code == 0, ok.output
    assert "runtime_single" in ok.stdout and (tmp_path / "b" / "bench.csv").is_file()
    bad = runner.invoke(app, ["bench", "--out", str(tmp_path / "c"), "strategies=[nope]"])
    assert bad.exit_code == 2
    lines = [ln for ln in bad.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0]
    assert not (tmp_path / "c").exists()


def test_adapter_tasks_must_fit_the_adapter(tmp_path):
    # The task named for an adapter supplies its requests: another shape measures other inputs.
    from lorascope.bench.prepare import _fitting_task
    from lorascope.data.tasks import GLUE_TASKS
    from lorascope.serve.sources import AdapterSource

    rte = AdapterSource("x", tmp_path, "rte", ("entailment", "not_entailment"), None, "run", GLUE_TASKS["rte"])
    assert _fitting_task(rte, GLUE_TASKS["rte"]) is GLUE_TASKS["rte"]
    with pytest.raises(ConfigError, match=r"adapter_tasks\.x: task 'sst2' takes single texts, but adapter 'x' was "
                                          r"trained on sentence pairs \('rte'\)"):
        _fitting_task(rte, GLUE_TASKS["sst2"])
    three = AdapterSource("x", tmp_path, None, ("a", "b", "c"), None, "adapter")
    with pytest.raises(ConfigError, match=r"adapter_tasks\.x: task 'sst2' has 2 labels, but adapter 'x' .* has a 3-label head"):
        _fitting_task(three, GLUE_TASKS["sst2"])
