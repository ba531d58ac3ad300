"""Serve LoRA adapters unmerged and swappable on one base classifier, without PEFT's overhead.

Public API:
    MultiAdapterRuntime: the runtime (merged single-adapter path, per-request switching, and
        mixed-adapter batches via a batched gather-matmul).
    LoraAdapter, load_adapter: a PEFT adapter folder as plain tensors, checked against a base.
"""

from lorascope.serve.adapter import LoraAdapter, LoraModule, load_adapter
from lorascope.serve.runtime import MODES, MultiAdapterRuntime

__all__ = ["MODES", "LoraAdapter", "LoraModule", "MultiAdapterRuntime", "load_adapter"]
