"""Limits and security settings of the HTTP server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from lorascope.config import StrictModel


class ServerSettings(StrictModel):
    """Everything that bounds what one request may cost and who may send it."""

    max_batch_size: PositiveInt = Field(default=64, description="most inputs (rows) in one classify request; more -> 413")
    max_input_chars: PositiveInt = Field(default=4096, description="most characters in one text (each side of a pair); more -> 413")
    max_length: PositiveInt = Field(default=384, description="texts are truncated to this many tokens")
    max_batch_rows: PositiveInt = Field(
        default=64, description="most rows the micro-batcher puts in one forward pass (requests are never split)"
    )
    max_wait_ms: float = Field(
        default=2.0, ge=0, description="how long the micro-batcher waits, before running a batch, for requests already admitted "
                                       "and still being tokenised (a lone request runs at once)"
    )
    token: str | None = Field(default=None, description="bearer token required on /v1/* (None: no authentication)")
    adapter_roots: list[str] = Field(
        default_factory=list,
        description="folders under which POST /v1/adapters may load adapters (empty: loading at run time is disabled)",
    )
    max_adapters: PositiveInt = Field(default=16, description="most adapters loaded at once; POST /v1/adapters beyond it -> 409")
    request_timeout_s: PositiveFloat = Field(
        default=60.0, description="a classify request not answered within this many seconds gets 503 with Retry-After"
    )
    max_queue: PositiveInt = Field(
        default=128, description="most classify requests waiting for a forward pass; one more gets 429 with Retry-After"
    )
    max_queue_delay_ms: PositiveFloat | None = Field(
        default=1000.0, description="most expected wait, from admission to answer, of any classify request at the "
                                    "recent cost per row; a request that would make one wait longer gets 429 with "
                                    "Retry-After (None: no bound)"
    )
    retry_after_s: PositiveInt = Field(
        default=1, description="seconds the Retry-After header of a 429 or 503 asks a client to wait"
    )
    served_model_name: str | None = Field(
        default=None, description="id of the base model in GET /v1/models (default: the base model as given)"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="warning", description="level of the server's log (uvicorn's and lorascope's)"
    )
    access_log: bool = Field(default=False, description="log one line per request: client, method, path, status, milliseconds")
    graceful_shutdown_s: PositiveFloat = Field(
        default=30.0, description="on SIGTERM, how long requests in flight may take to finish; new ones get 503 meanwhile"
    )

    @model_validator(mode="after")
    def _batch_fits(self) -> ServerSettings:
        if self.max_batch_rows < self.max_batch_size:
            raise ValueError(
                f"max_batch_rows ({self.max_batch_rows}) must be at least max_batch_size ({self.max_batch_size}): "
                "a request is never split across forward passes"
            )
        if self.token is not None and not self.token.strip():
            raise ValueError("token must not be empty")
        return self

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted: every row a pair of maximal texts, 4 bytes per char, plus slack.

        Bounds memory before the body is parsed; JSON escapes can exceed it only for
        pathological inputs, which then get 413 like any other oversized request.
        """
        return self.max_batch_size * 2 * (self.max_input_chars * 4 + 16) + 64 * 1024
