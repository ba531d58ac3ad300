"""``lorascope bench --endpoint``: a real ``lorascope serve`` on a loopback port, timed beside the in-process runtime.

Three synthetic adapters (sst2 single texts, mrpc and rte pairs, so both ``/classify`` and ``/score``
are sent) on the 2-layer random ``tiny-llama``; the server is the app ``lorascope serve`` builds,
run by uvicorn in a thread. The numbers are meaningless as latencies; every field, the correctness
check, the ratios and the refusals are what is tested.
"""

from __future__ import annotations

import csv
import json

import pytest
import typer
from typer.testing import CliRunner

from lorascope.bench import BenchConfig, run_bench
from lorascope.bench.endpoint import REFERENCE
from lorascope.bench.record import BenchRecord
from lorascope.bench.synthetic import make_synthetic_adapters
from lorascope.cli.serving import register
from lorascope.config import build_config
from lorascope.errors import ConfigError
from lorascope.models.base_recipe import open_base
from lorascope.report.serving_text import serving_section
from tests.conftest import GLUE_DIR
from tests.helpers import free_port, serving

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = "tiny-llama"
SIZES = [1, 4]
LEVELS = [1, 2]
TINY = dict(model=BASE, batch_sizes=SIZES, warmup=1, requests=5, bootstrap_resamples=200, check_rows=4, threads=1,
            endpoint_concurrency=LEVELS)



@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, str]:
    if not (GLUE_DIR / "SST-2" / "dev.tsv").is_file():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    root = tmp_path_factory.mktemp("endpoint-adapters")
    spec = open_base(BASE, ("negative", "positive"), seed=0)
    sources = make_synthetic_adapters(spec, ["sst2", "mrpc", "rte"], 3, root, r=4, alpha=8, targets=None, seed=1)
    return {s.name: str(s.folder) for s in sources}


@pytest.fixture(scope="module")
def server(adapters):
    """``lorascope serve --model tiny-llama --adapter ...`` on a free loopback port; yields its URL."""
    from lorascope.serve.http import ServerSettings, build_app

    with serving(build_app(BASE, adapters, ServerSettings(max_wait_ms=0), device="cpu")) as url:
        yield url


@pytest.fixture(scope="module")
def measured(server, adapters, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-endpoint") / "out"
    # runtime_switch3 holds all three adapters, so the endpoint's in-process counterpart shares it.
    cfg = BenchConfig(**TINY, adapters=adapters, strategies=["runtime_switch3"], endpoint=server, data_dir=str(GLUE_DIR))
    return out, run_bench(cfg, out, show_progress=False).as_json()


def _row(result, strategy, b):
    (row,) = [r for r in result["results"] if r["strategy"] == strategy and r["batch_size"] == b]
    return row


@pytest.mark.slow
def test_endpoint_rows_sit_beside_the_in_process_ones_at_every_batch_size(measured):
    out, result = measured
    strategies = {(r["strategy"], r["batch_size"]) for r in result["results"]}
    for b in SIZES:
        assert {("lora_merged", b), ("runtime_switch3", b), (REFERENCE, b), ("endpoint:lorascope", b)} <= strategies
        for s in (REFERENCE, "endpoint:lorascope"):
            r = _row(result, s, b)
            assert r["n"] == TINY["requests"] and 0 < r["p50_ms"] <= r["p99_ms"]
            assert r["ci_low_ms"] <= r["mean_ms"] <= r["ci_high_ms"] and r["p50_ci_low_ms"] <= r["p50_ms"] <= r["p50_ci_high_ms"]
            assert r["ratio_to_merged"] is None and r["h2"] is None  # other requests than the merged model's
    ep = result["endpoint"]
    assert ep["strategy"] == "endpoint:lorascope" and ep["lorascope_server"] and not ep["remote"]
    assert ep["reference_runtime"] == "runtime3"
    assert ep["models"] == {"sst2": "sst2", "mrpc": "mrpc", "rte": "rte"}
    assert ep["routes"] == {"sst2": "/classify", "mrpc": "/score", "rte": "/score"}
    with (out / "bench.csv").open() as f:
        rows = {(r["strategy"], int(r["batch_size"])): r for r in csv.DictReader(f)}
    assert all(rows[("endpoint:lorascope", b)]["overhead_ratio"] for b in SIZES)
    assert json.loads((out / "bench.json").read_text())["endpoint"]["overhead"] == json.loads(json.dumps(ep["overhead"]))


def test_overhead_is_endpoint_latency_over_in_process_latency(measured):
    _, result = measured
    by_size = {o["batch_size"]: o for o in result["endpoint"]["overhead"]}
    assert sorted(by_size) == SIZES
    for b in SIZES:
        ep, ref = _row(result, "endpoint:lorascope", b), _row(result, REFERENCE, b)
        assert ep["overhead_ratio"] == pytest.approx(ep["mean_ms"] / ref["mean_ms"])
        assert ep["added_ms"] == pytest.approx(ep["mean_ms"] - ref["mean_ms"])
        assert ep["overhead_ci_low"] <= ep["overhead_ratio"] <= ep["overhead_ci_high"]
        o = by_size[b]
        assert (o["endpoint_mean_ms"], o["inprocess_mean_ms"]) == pytest.approx((ep["mean_ms"], ref["mean_ms"]))
        assert o["overhead_ratio"] == ep["overhead_ratio"]
        assert ref["overhead_ratio"] is None


def test_endpoint_answers_equal_the_in_process_runtime(measured):
    _, result = measured
    check = result["endpoint"]["check"]
    assert check["rows"] == sum((TINY["warmup"] + TINY["requests"]) * b for b in SIZES)  # every answer, warm-up too
    assert check["agreement"] == 1.0 and check["mismatches"] == 0 and check["passed"]
    assert check["max_abs_prob_diff"] <= check["tolerance"] == 1e-4
    assert all(_row(result, "endpoint:lorascope", b)["check_passed"] for b in SIZES)
    assert result["checks_passed"]


def test_throughput_under_concurrent_clients(measured):
    _, result = measured
    sweep = result["endpoint"]["concurrency"]
    assert [(r["batch_size"], r["concurrency"]) for r in sweep] == [(b, c) for b in SIZES for c in LEVELS]
    for r in sweep:
        assert r["n"] == TINY["requests"] and r["errors"] == 0
        assert r["throughput_rps"] == pytest.approx(r["batch_size"] * r["n"] / r["wall_s"])
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["throughput_vs_inprocess"] > 0


def test_report_shows_the_endpoint_beside_the_in_process_strategies(measured):
    out, result = measured
    text = serving_section(BenchRecord.read(out / BenchRecord.FILE), {})
    assert "### HTTP endpoint" in text
    for b in SIZES:
        ratio = _row(result, "endpoint:lorascope", b)["overhead_ratio"]
        assert f"| endpoint:lorascope | {b} |" in text and f"{ratio:.3f}" in text
    assert "same prediction: 100.0%" in text and "clients" in text


def test_a_mismatch_is_reported_not_raised(server, adapters, tmp_path):
    """Two pair adapters swapped on the way out: every answer comes from the other adapter."""
    cfg = BenchConfig(**{**TINY, "batch_sizes": [2], "warmup": 0, "requests": 3, "endpoint_concurrency": [1]},
                      adapters={"mrpc": adapters["mrpc"], "rte": adapters["rte"]}, endpoint=server,
                      endpoint_models=["rte", "mrpc"], strategies=["lora_merged"], data_dir=str(GLUE_DIR))
    result = run_bench(cfg, tmp_path / "swapped", show_progress=False).as_json()
    check = result["endpoint"]["check"]
    assert not check["passed"] and check["max_abs_prob_diff"] > check["tolerance"]
    assert result["endpoint"]["reference_runtime"] == "loaded for the endpoint"
    assert result["endpoint"]["models"] == {"mrpc": "rte", "rte": "mrpc"}
    assert _row(result, "endpoint:lorascope", 2)["check_passed"] is False
    assert (tmp_path / "swapped" / "bench.json").is_file()


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://gpu-box:8000", "http://0.0.0.0:8000"])
def test_a_remote_endpoint_needs_the_opt_in(url):
    with pytest.raises(ConfigError, match="allow_remote"):
        build_config(BenchConfig, {"endpoint": url})
    assert build_config(BenchConfig, {"endpoint": url, "allow_remote": True}).endpoint == url


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "http://127.0.0.1:99999", "http://127.0.0.1:8000/?x=1", "127.0.0.1:8000"])
def test_a_bad_endpoint_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="endpoint"):
        build_config(BenchConfig, {"endpoint": url, "allow_remote": True})


def _cli(args: list[str]):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, ["bench", *args])


def _one_error_line(result, *says: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output and all(s in lines[0] for s in says), lines[0]


def test_cli_a_server_that_is_down_is_one_line(tmp_path):
    port = free_port()  # nothing listens there once the probe socket is closed
    result = _cli(["--model", BASE, "--endpoint", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "o")])
    _one_error_line(result, "cannot reach", str(port))
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_cli_refuses_a_remote_endpoint_and_an_unserved_name(server, adapters, tmp_path):
    _one_error_line(_cli(["--endpoint", "http://example.com:8000", "--out", str(tmp_path / "r")]), "--allow-remote")
    result = _cli(["--model", BASE, "--adapter", f"sst2={adapters['sst2']}", "--endpoint", server,
                   "--endpoint-model", "sst2=nope", "--out", str(tmp_path / "n"), f"data_dir={GLUE_DIR}"])
    _one_error_line(result, "does not serve nope", "sst2")
    assert not (tmp_path / "n").exists() and not (tmp_path / "n.partial").exists()
