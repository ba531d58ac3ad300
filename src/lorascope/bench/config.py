"""The serving benchmark's configuration: which model, adapters, strategies, batch sizes and budget."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from lorascope.config import StrictModel
from lorascope.serve.sources import check_adapter_name

# Every strategy the benchmark knows, in the order tables list them. The number at the end of a
# name is how many adapters that strategy holds; it is skipped when fewer are given.
STRATEGIES: tuple[str, ...] = (
    "full_ft",
    "lora_merged",
    "lora_separate",
    "peft_switch2",
    "peft_switch3",
    "peft_mixed3",
    "runtime_single",
    "runtime_switch3",
    "runtime_mixed3",
)
# Every latency is reported as a ratio to this one, measured in the same run at the same batch size.
BASELINE = "lora_merged"
MAX_ADAPTERS = 3


class BenchConfig(StrictModel):
    """Everything that determines one serving benchmark run."""

    model: str = Field(
        "minilm",
        description="base model: alias (minilm, smollm2, tiny-llama), 'tinyllama-shape' (random init with "
        "TinyLlama-1.1B's shapes), local folder or Hub id",
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="name -> training run folder or PEFT adapter folder (1 to 3); empty: synthetic adapters",
    )
    adapter_tasks: dict[str, str] = Field(
        default_factory=dict,
        description="name -> task whose dev set supplies that adapter's requests, for adapter folders without "
        "a run's metrics.json (default: the adapter's name when it is a task)",
    )
    full_model: str | None = Field(
        None,
        description="full fine-tuning run folder or model folder for 'full_ft' (default: the base model stands in: "
        "same shapes, same cost)",
    )
    synthetic_adapters: int = Field(3, ge=1, le=MAX_ADAPTERS, description="how many synthetic adapters to build when none are given")
    synthetic_tasks: list[str] = Field(
        default_factory=lambda: ["sst2", "mrpc", "rte"],
        description="tasks whose dev sets feed the synthetic adapters' requests, one per adapter (cycled)",
    )
    lora_r: PositiveInt = Field(8, description="rank of the synthetic adapters")
    lora_alpha: float = Field(16, gt=0, description="alpha of the synthetic adapters")
    lora_targets: list[str] | None = Field(
        None, description="modules the synthetic adapters adapt (default per architecture: q/v projections)"
    )
    batch_sizes: list[PositiveInt] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16], description="rows per request; each is measured separately"
    )
    warmup: NonNegativeInt = Field(10, description="unrecorded requests per strategy and batch size before measuring")
    requests: int = Field(100, ge=2, description="measured requests per strategy and batch size")
    max_length: PositiveInt = Field(384, description="truncate inputs to this many tokens (padding is dynamic)")
    dtype: Literal["fp32", "bf16"] = Field("fp32", description="parameter dtype of every model")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu")
    threads: PositiveInt | None = Field(None, description="torch CPU threads (default: torch's choice)")
    strategies: list[str] = Field(
        default_factory=lambda: list(STRATEGIES),
        description=f"strategies to measure (always includes {BASELINE}, the ratio baseline): {', '.join(STRATEGIES)}",
    )
    merged_cache_size: PositiveInt = Field(
        8, description="lorascope runtime: adapters whose merged weights are cached (switching among them is free)"
    )
    seed: int = Field(0, description="seeds the request sample, synthetic adapters and random bases")
    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR, else the Hub)")
    check_rows: PositiveInt = Field(32, description="dev rows on which the correctness checks compare logits")
    peft_atol: float | None = Field(
        None, gt=0, description="PEFT multi-adapter vs single-adapter max |logit difference| (default 1e-5 fp32, 5e-2 bf16)"
    )
    runtime_atol: float | None = Field(
        None, gt=0, description="lorascope runtime vs PEFT single-adapter max |logit difference| (default 1e-4 fp32, 1e-1 bf16)"
    )
    bootstrap_resamples: PositiveInt = Field(2000, description="bootstrap resamples of each latency interval")
    h2_max_ratio: float = Field(1.30, gt=1, description="H2: an adapter strategy costs at most this many times the "
                                "merged model's mean latency (the protocol's 30% added latency)")
    endpoint: str | None = Field(
        None, description="base URL of a running server that speaks vLLM's classification protocol (lorascope serve, "
        "vllm serve): timed on the same requests beside the in-process runtime (loopback only unless allow_remote)",
    )
    endpoint_models: dict[str, str] | list[str] = Field(
        default_factory=dict,
        description="the name the endpoint serves each adapter under: adapter -> served name, or a list in adapter "
        "order (default: the adapter's own name)",
    )
    endpoint_label: str | None = Field(
        None, description="the endpoint's rows are 'endpoint:<label>' (default: the owner GET /v1/models reports, "
        "e.g. lorascope or vllm)",
    )
    endpoint_concurrency: list[PositiveInt] = Field(
        default_factory=lambda: [1, 4], description="concurrent clients of the endpoint's throughput sweep, per batch size",
    )
    endpoint_timeout_s: PositiveFloat = Field(60.0, description="per-request timeout of the endpoint")
    endpoint_atol: float | None = Field(
        None, gt=0, description="lorascope's own server vs the in-process runtime, max |probability difference| "
        "(default 1e-4 fp32, 2e-2 bf16); other servers are checked on predicted labels only",
    )
    allow_remote: bool = Field(False, description="let endpoint be a host other than loopback (a GPU box running vLLM)")

    @field_validator("batch_sizes")
    @classmethod
    def _unique_sizes(cls, sizes: list[int]) -> list[int]:
        if not sizes:
            raise ValueError("give at least one batch size")
        return sorted(set(sizes))

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategy {unknown[0]!r}; expected some of {', '.join(STRATEGIES)}")
        # Table order, whatever order they were given in; the baseline is always measured.
        chosen = set(names) | {BASELINE}
        return [n for n in STRATEGIES if n in chosen]

    @field_validator("adapters")
    @classmethod
    def _adapter_count(cls, adapters: dict[str, str]) -> dict[str, str]:
        if len(adapters) > MAX_ADAPTERS:
            raise ValueError(f"at most {MAX_ADAPTERS} adapters (the largest multi-adapter strategy), got {len(adapters)}")
        for name in adapters:
            check_adapter_name(name, ValueError)
        return adapters

    @field_validator("endpoint_models", mode="before")
    @classmethod
    def _served_names(cls, given: Any) -> Any:
        """``[a=x, b=y]`` (as options and key=value give it) -> ``{a: x, b: y}``; bare names stay a list."""
        if not isinstance(given, list) or not any(isinstance(item, str) and "=" in item for item in given):
            return given
        if not all(isinstance(item, str) and "=" in item for item in given):
            raise ValueError("give every served name as adapter=name, or none of them (a list in adapter order)")
        pairs = [item.split("=", 1) for item in given]
        return {a.strip(): served.strip() for a, served in pairs}

    @field_validator("endpoint_label")
    @classmethod
    def _label_alphabet(cls, label: str | None) -> str | None:
        if label is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", label):
            raise ValueError("endpoint_label: 1 to 64 letters, digits, '_', '.' or '-'")
        return label

    @field_validator("endpoint_concurrency")
    @classmethod
    def _unique_levels(cls, levels: list[int]) -> list[int]:
        if not levels:
            raise ValueError("give at least one concurrency level")
        return sorted(set(levels))

    @model_validator(mode="after")
    def _tasks_for_synthetic(self) -> BenchConfig:
        if not self.adapters and not self.synthetic_tasks:
            raise ValueError("synthetic_tasks must name at least one task")
        return self

    @model_validator(mode="after")
    def _endpoint_host(self) -> BenchConfig:
        from lorascope.bench.urls import url_problem

        if self.endpoint is not None:
            problem = url_problem(self.endpoint, self.allow_remote)
            if problem:
                raise ValueError(f"endpoint {self.endpoint!r}: {problem}")
        return self

    def atol(self, which: Literal["peft", "runtime"]) -> float:
        """Tolerance of a correctness check; bf16 defaults allow its rounding (8 significant bits)."""
        given = self.peft_atol if which == "peft" else self.runtime_atol
        if given is not None:
            return given
        if self.dtype == "fp32":
            return 1e-5 if which == "peft" else 1e-4
        return 5e-2 if which == "peft" else 1e-1

    def endpoint_tolerance(self) -> float:
        """Largest |probability difference| between lorascope's server and the in-process runtime."""
        if self.endpoint_atol is not None:
            return self.endpoint_atol
        return 1e-4 if self.dtype == "fp32" else 2e-2
