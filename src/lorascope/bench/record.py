"""``bench.json`` as a typed value: :class:`BenchRecord` and its parts (see :mod:`lorascope.records`).

What :func:`~lorascope.bench.run.run_bench` returns and writes, and what the study, the command
line and the report read back: the environment and inputs, each strategy's resources, one
:class:`BenchRow` per (strategy, batch size), the correctness checks and, when an HTTP endpoint was
measured, its :class:`EndpointSection`. Optional parts a file lacked stay absent when it is written
again (:class:`~lorascope.records.ExactKeysRecord`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import JsonValue

from lorascope.provenance import Provenance
from lorascope.records import ExactKeysRecord, RecordPart


class BenchEnvironment(RecordPart):
    """Where the benchmark ran: ``device_name`` in words, with the dtype, CPU threads and torch build."""

    device: str | None = None
    device_name: str
    dtype: str | None = None
    threads: int | None = None
    torch: str | None = None


class BaseModelInfo(RecordPart):
    """The base model every strategy serves (``random_init``: a tiny random model of the tests)."""

    name: str
    source: str
    is_decoder: bool
    random_init: bool


class AdapterInfo(RecordPart):
    """One served adapter: where it came from (``origin``: a run, a folder, synthetic) and its size on disk."""

    name: str
    task: str
    origin: str
    label_names: list[str]
    folder: str
    weights_bytes: int
    folder_bytes: int


class FullFtInfo(RecordPart):
    """The full fine-tuned model compared (``stand_in``: the base model stood in for it)."""

    stand_in: bool
    folder: str | None = None
    task: str | None = None
    bytes: int | None = None
    estimated: bool


class StrategyMemory(RecordPart):
    """What a strategy's model holds once loaded; ``cuda_forward_peak_bytes`` per batch size (a string,
    as JSON keys are; None on CPU)."""

    model_tensor_bytes: int | None
    cuda_resident_bytes: int | None
    rss_load_delta_bytes: int | None
    cuda_forward_peak_bytes: dict[str, int | None] = {}


class StrategyInfo(RecordPart):
    """One serving strategy: its loaded group, the adapters in it, load time, memory and artifact size."""

    description: str
    group: str
    adapters: list[str]
    load_s: float | None
    memory: StrategyMemory
    artifact_bytes: int | None
    artifact_estimated: bool


class RequestStats(RecordPart):
    """The requests timed at one batch size: warm-up and measured counts, mean length and real-token share."""

    warmup: int | None = None
    measured: int | None = None
    mean_seq_len: float
    real_token_fraction: float


class BenchRow(RecordPart):
    """One (strategy, batch size): latency (ms) with bootstrap intervals, the ratio to the merged model
    with its interval and H2 reading, and the strategy's resources; an endpoint's row has its
    ``overhead_ratio`` to the in-process runtime instead of a ratio to the merged model."""

    strategy: str
    batch_size: int
    n: int | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    p50_ci_low_ms: float | None = None
    p50_ci_high_ms: float | None = None
    throughput_rps: float | None = None
    ratio_to_merged: float | None = None
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    p50_ratio_to_merged: float | None = None
    h2: str | None = None
    mean_seq_len: float | None = None
    adapters_loaded: int | None = None
    load_s: float | None = None
    model_tensor_bytes: int | None = None
    cuda_resident_bytes: int | None = None
    cuda_forward_peak_bytes: int | None = None
    rss_load_delta_bytes: int | None = None
    artifact_bytes: int | None = None
    artifact_estimated: bool | None = None
    check_passed: bool | None = None
    synthetic_adapters: bool | None = None
    full_ft_stand_in: bool | None = None
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    description: str | None = None
    overhead_ratio: float | None = None
    overhead_ci_low: float | None = None
    overhead_ci_high: float | None = None
    p50_overhead_ratio: float | None = None
    added_ms: float | None = None


class BenchCheck(RecordPart):
    """A strategy's logits against its reference on the same rows (``agreement``: share of equal predictions)."""

    strategy: str
    compared_with: str
    rows: int
    max_abs_diff: float | None
    tolerance: float
    agreement: float
    passed: bool


class ProcessMemory(RecordPart):
    """The benchmark process's peaks (every strategy shares the process)."""

    peak_rss_bytes: int | None
    cuda_max_allocated_bytes: int | None
    note: str


class EndpointRequestStats(RecordPart):
    """The endpoint's requests at one batch size: mean length and real-token share."""

    mean_seq_len: float
    real_token_fraction: float


class EndpointOverhead(RecordPart):
    """The endpoint against the in-process runtime on the same requests at one batch size (ms; ratio with interval)."""

    batch_size: int
    inprocess_mean_ms: float | None
    endpoint_mean_ms: float | None
    inprocess_p50_ms: float | None
    endpoint_p50_ms: float | None
    inprocess_p99_ms: float | None
    endpoint_p99_ms: float | None
    overhead_ratio: float | None
    overhead_ci_low: float | None
    overhead_ci_high: float | None
    p50_overhead_ratio: float | None
    added_ms: float | None


class ConcurrencyLevel(RecordPart):
    """The endpoint under ``concurrency`` closed-loop clients at one batch size: answered requests'
    latency, rows/s and requests/s, errors by status, and rows/s relative to the in-process runtime's."""

    batch_size: int
    concurrency: int
    requests: int
    n: int
    errors: int
    status_counts: dict[str, int]
    wall_s: float
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p50_ci_low_ms: float | None = None
    p50_ci_high_ms: float | None = None
    throughput_rps: float | None = None
    requests_per_s: float | None = None
    inprocess_throughput_rps: float | None = None
    throughput_vs_inprocess: float | None = None


class EndpointCheckRecord(RecordPart):
    """The endpoint's answers against the in-process runtime's on the same requests."""

    compared_with: str
    rows: int
    agreement: float
    mismatches: int
    max_abs_prob_diff: float | None
    tolerance: float
    passed: bool
    first_mismatches: list[dict[str, JsonValue]] = []


class EndpointSection(RecordPart):
    """An HTTP endpoint measured beside the in-process strategies (``bench --endpoint``).

    Attributes:
        strategy, reference: the endpoint's row name and the in-process runtime it is compared with.
        models, routes: adapter -> the model name it is served under, and the route asked.
        remote: the endpoint is not on this machine (its times include the network).
    """

    url: str
    strategy: str
    reference: str
    reference_description: str
    reference_runtime: str
    reference_load_s: float | None
    owned_by: str | None
    lorascope_server: bool
    remote: bool
    models: dict[str, str]
    routes: dict[str, str]
    requests: dict[str, EndpointRequestStats]
    overhead: list[EndpointOverhead]
    concurrency: list[ConcurrencyLevel]
    check: EndpointCheckRecord


class BenchRecord(ExactKeysRecord):
    """``bench/bench.json``: every serving strategy on the same requests.

    Attributes:
        strategies: strategy -> its resources; ``skipped``: strategy -> why it was not run.
        requests: batch size (as a string, as JSON keys are) -> the requests timed.
        results: one row per (strategy, batch size), in the order measured.
        checks_passed: every correctness check passed.
        config: the benchmark's settings as run.
    """

    KIND: ClassVar[str] = "bench"
    FILE: ClassVar[str] = "bench.json"

    config: dict[str, JsonValue]
    environment: BenchEnvironment
    base_model: BaseModelInfo | None = None
    synthetic_adapters: bool = False
    adapters: list[AdapterInfo] = []
    full_ft: FullFtInfo | None = None
    strategies: dict[str, StrategyInfo]
    skipped: dict[str, str] = {}
    requests: dict[str, RequestStats] = {}
    results: list[BenchRow]
    checks: list[BenchCheck]
    checks_passed: bool
    memory: ProcessMemory | None = None
    notes: list[str] = []
    provenance: Provenance | None = None
    endpoint: EndpointSection | None = None

    @classmethod
    def upgrade(cls, raw: dict[str, Any], version: int) -> dict[str, Any]:
        """Rows of files written before H2's threshold was a setting name its reading ``h2_at_most_30pct``."""
        if version == 0 and isinstance(raw.get("results"), list):
            renamed = [{("h2" if key == "h2_at_most_30pct" else key): value for key, value in row.items()}
                       if isinstance(row, dict) else row for row in raw["results"]]
            return {**raw, "results": renamed}
        return raw

    def rows(self, strategy: str) -> list[BenchRow]:
        """The result rows of ``strategy``, one per batch size."""
        return [r for r in self.results if r.strategy == strategy]
