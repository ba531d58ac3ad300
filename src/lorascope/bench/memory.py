"""Memory accounting for the serving benchmark.

Three views, because no single one is both exact and per strategy:

* tensor bytes reachable from a strategy's modules (exact, per strategy, any device): parameters,
  buffers and tensors held as plain attributes (the lorascope runtime keeps its pristine base
  weights and stacked adapters that way), each storage counted once; for the runtime, plus its
  cache of merged weights;
* on CUDA, the allocator's view: bytes allocated while a strategy was loaded and primed, and the
  extra peak of one forward pass at each batch size (``max_memory_allocated`` after a reset);
* on CPU, the process's resident set (psutil) before and after each load, and its peak
  (``ru_maxrss``). Both are process-wide: all strategies live in one process, so the peak is
  that of the whole benchmark, not of one strategy.
"""

from __future__ import annotations

import resource
import sys

import psutil
import torch
from torch import nn

from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.lora_linear import LoraLinear


def reachable_tensor_bytes(*modules: nn.Module) -> int:
    """Bytes of every distinct tensor storage held by ``modules`` and their submodules."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for root in modules:
        for module in root.modules():
            tensors = [*module._parameters.values(), *module._buffers.values()]
            tensors += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
            for t in tensors:
                if t is None or t.device.type == "meta":
                    continue
                storage = t.untyped_storage()
                key = (str(t.device), storage.data_ptr())
                if key not in seen:
                    seen.add(key)
                    total += storage.nbytes()
    return total


def runtime_tensor_bytes(runtime: MultiAdapterRuntime, cached_adapters: int) -> int:
    """Bytes a lorascope runtime holds: base weights, stacked adapters and heads, and its merged-weight cache.

    Only the *active* merged copy is reachable from the model, so the cache is counted as
    ``cached_adapters`` copies of the adapted layers' weights. The per-adapter fp32 master copies of
    A and B (a fraction of a percent of a q/v rank-8 model) are not counted.

    Args:
        runtime: The runtime (its active adapter is restored afterwards).
        cached_adapters: Adapters whose merged weights are cached.
    """
    active = runtime.active_adapter
    runtime.restore_base()
    try:
        held = reachable_tensor_bytes(runtime.model)
    finally:
        if active is not None:
            runtime.activate(active)
    adapted = sum(m.base_weight.numel() * m.base_weight.element_size() for m in runtime.model.modules() if isinstance(m, LoraLinear))
    return held + cached_adapters * adapted


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters of ``model`` (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def rss_bytes() -> int:
    """Current resident set size of this process."""
    rss: int = psutil.Process().memory_info().rss
    return rss


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakMeter:
    """Per-window CUDA peaks (``max_memory_allocated`` after a reset) that also keep the run's overall peak.

    Off CUDA every reading is None.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._overall = 0

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def start(self) -> int | None:
        """Open a window: returns the bytes allocated now."""
        if not self.on_cuda:
            return None
        torch.cuda.synchronize(self.device)
        self._overall = max(self._overall, torch.cuda.max_memory_allocated(self.device))
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)

    def extra_since(self, start: int | None) -> int | None:
        """Peak bytes allocated above ``start`` since :meth:`start`."""
        if not self.on_cuda or start is None:
            return None
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) - start

    def overall(self) -> int | None:
        """Largest ``max_memory_allocated`` seen in the whole run."""
        if not self.on_cuda:
            return None
        return max(self._overall, torch.cuda.max_memory_allocated(self.device))
