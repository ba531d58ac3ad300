"""Which device and dtype a model runs on: the one resolver every stage and the server share.

A setting is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. ``auto`` is the first of cuda,
mps and cpu that this machine has. A device that is named but absent is a
:class:`~lorascope.errors.ConfigError` naming the setting, before any model is loaded.

torch is imported inside the functions: the configs that declare a device setting are read by
``--help``, which must not load torch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field

from lorascope.config import StrictModel
from lorascope.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
DEVICE_HELP = "auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps"


def _known_device(value: str) -> str:
    if not re.match(DEVICE_PATTERN, value):
        raise ValueError(f"expected {DEVICE_HELP}; got {value!r}")
    return value


# Checked for its spelling when a config is read; for its presence on this machine by resolve_device.
DeviceSetting = Annotated[str, AfterValidator(_known_device)]
# Extraction precision: ``auto`` is bf16 where training's mixed precision is (a CUDA device that
# supports bf16, the Trainer's default), float32 elsewhere.
Precision = Literal["auto", "fp32", "bf16"]


class DeviceSettings(StrictModel):
    """Where a stage puts its models (every stand-alone command that loads one has this setting)."""

    device: DeviceSetting = Field("auto", description=f"where models run: {DEVICE_HELP}")


class ExtractionSettings(DeviceSettings):
    """Where, and in which precision, hidden states are extracted."""

    precision: Precision = Field("auto", description="forward-pass precision: auto (bf16 on a CUDA device that "
                                 "supports it, as training's mixed precision; float32 elsewhere), fp32 or bf16; "
                                 "pooling and similarities are computed in float32/float64 either way")


def resolve_device(setting: str = "auto", *, name: str = "device") -> torch.device:
    """The ``torch.device`` for a device setting.

    Args:
        setting: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        name: the setting's name, for the error (``device``, ``--device``).

    Raises:
        ConfigError: an unknown setting, or a device this machine does not have.
    """
    import torch

    if not re.match(DEVICE_PATTERN, setting or ""):
        raise ConfigError(f"{name}={setting}: expected {DEVICE_HELP}")
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{name}={setting}: no CUDA device is available here (use {name}=cpu or auto)")
        index = int(setting.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"{name}={setting}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"numbered from 0")
    if setting == "mps" and not _mps_available():
        raise ConfigError(f"{name}=mps: no Apple MPS device is available here (use {name}=cpu or auto)")
    return torch.device(setting)


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a forward pass computes in: ``bf16`` or ``fp32`` as set; ``auto`` is bf16 on a
    CUDA device that supports it (what the Trainer's mixed precision trains in), float32 elsewhere.

    Raises:
        ConfigError: ``bf16`` on a device without bf16 support.
    """
    import torch

    bf16_here = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    if precision == "bf16" and not bf16_here:
        raise ConfigError(f"precision=bf16: {device} does not support bfloat16 (use precision=fp32)")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and bf16_here else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def free_memory(device: torch.device) -> int | None:
    """Bytes free on a CUDA device now (``torch.cuda.mem_get_info``, other processes included),
    plus what this process's caching allocator holds but does not use; None off CUDA."""
    import torch

    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def release(device: torch.device) -> None:
    """Give the caching allocator's unused blocks back, so that the next model of a stage finds them free."""
    import gc

    import torch

    gc.collect()  # PEFT wrappers hold reference cycles: their weights go only with a collection
    if device.type == "cuda":
        torch.cuda.empty_cache()


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (every parameter of a lorascope model is on one device)."""
    return next(model.parameters()).device
