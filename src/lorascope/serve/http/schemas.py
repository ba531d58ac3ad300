"""Request and response bodies of the HTTP API (pydantic models, so FastAPI validates and documents them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# One input: a single text, or a pair [text_a, text_b] for sentence-pair tasks.
TextInput = str | list[str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifyRequest(_Strict):
    """``POST /v1/classify``: texts (or pairs) to classify with one adapter."""

    adapter: str = Field(description="name of a loaded adapter")
    inputs: list[TextInput] = Field(min_length=1, description="texts, or [text_a, text_b] pairs; may be mixed")


class Prediction(BaseModel):
    """One input's prediction."""

    label: str = Field(description="predicted label name")
    label_id: int = Field(description="predicted label id")
    probabilities: dict[str, float] = Field(description="softmax probability of every label")


class ClassifyResponse(BaseModel):
    """Predictions in the order of the inputs."""

    adapter: str
    predictions: list[Prediction]


class AdapterInfo(BaseModel):
    """A loaded adapter (its folder is not disclosed)."""

    name: str
    labels: list[str]
    task: str | None = None
    input: Literal["single", "pair"] | None = Field(
        None, description="what each input must be: a string (single) or [text_a, text_b] (pair); null when unknown")


class AdapterList(BaseModel):
    """``GET /v1/adapters``."""

    adapters: list[AdapterInfo]


class LoadAdapterRequest(_Strict):
    """``POST /v1/adapters``: load a PEFT adapter folder (or LoRA run folder) under an allowed root."""

    name: str = Field(description="name to serve it under: 1-64 letters, digits, '_' or '-'")
    path: str = Field(description="folder, absolute or relative to an allowed root")


class ErrorDetail(BaseModel):
    """The ``error`` object of an error response: a stable code and a message."""

    code: str = Field(description="stable machine-readable code, e.g. unknown_adapter")
    message: str = Field(description="what was wrong, for a person")


class ErrorResponse(BaseModel):
    """Every error response has this shape."""

    error: ErrorDetail
