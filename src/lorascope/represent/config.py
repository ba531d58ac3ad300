"""The settings of a representation extraction (kept apart from it, so that reading them imports no model code)."""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Len
from pydantic import Field, PositiveInt

from lorascope.config import StrictModel
from lorascope.models.device import ExtractionSettings

# How a layer's token states become one vector per sample: the masked mean over real tokens, or
# the token the classification head reads ([CLS] for encoders, the last real token for decoders).
Pooling = Literal["mean", "head_token"]


class SampleSettings(StrictModel):
    """Which samples are encoded and how: what must be identical for every model that is compared."""

    n_samples: PositiveInt = Field(750, description="samples (all of them when the split is smaller)")
    data_seed: int = Field(0, description="seed of the deterministic sample subset")
    max_length: PositiveInt = Field(384, description="truncation length (must match across compared models)")
    batch_size: PositiveInt = Field(32, description="extraction batch size (on CUDA, lowered to what fits in free memory)")


class RepresentConfig(SampleSettings, ExtractionSettings):
    """What to extract, from which model, on which samples."""

    task: str = Field("sst2", description="GLUE task or task YAML file")
    model: str = Field("minilm", description="base model (alias, folder, Hub id) or a training run folder")
    split: str = Field("validation", description="split to draw samples from")
    poolings: Annotated[list[Pooling], Len(min_length=1)] = Field(
        ["mean", "head_token"], description="mean (masked mean over tokens), head_token (the token the head reads)")
    lora_init: bool = Field(False, description="wrap the base in a fresh LoRA adapter (B = 0): a pipeline control")
    order_seed: int | None = Field(None, description="extract the samples in an order shuffled by this seed "
                                   "(rows and ids stay paired): a pipeline control")
    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR)")
