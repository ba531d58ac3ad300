"""The model side of the server: a :class:`MultiAdapterRuntime` plus label names, run one batch at a time.

Every method that touches the runtime (``classify``, ``add``, ``remove``) runs on the micro-batcher's
single worker thread, so they never overlap. The event loop only reads :attr:`Engine.adapters`, a
mapping that is replaced as a whole (never mutated) when an adapter is added or removed, so a
reader always sees a consistent snapshot without a lock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import cast

import numpy as np
import numpy.typing as npt
import torch

from lorascope.errors import LorascopeError
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http.adapter_meta import AdapterMeta
from lorascope.serve.http.encoder import Features, TextEncoder


@dataclass(frozen=True)
class ClassifyJob:
    """One classify request: its adapter and its tokenised rows."""

    adapter: str
    rows: list[Features]


class AdapterGone(LorascopeError):
    """The adapter was unloaded after the request was accepted."""


class EmptyRow(LorascopeError):
    """A job holds a row without tokens (the app refuses such inputs first; this keeps one from failing a batch)."""


class Engine:
    """Classifies batches of jobs for many adapters in one forward pass.

    Args:
        runtime: The runtime, already holding the start-up adapters.
        encoder: Tokeniser for the runtime's base model.
        meta: Adapter name -> label names and task, for every adapter in ``runtime``; missing
            entries get ``LABEL_<i>`` names.
    """

    def __init__(self, runtime: MultiAdapterRuntime, encoder: TextEncoder, meta: Mapping[str, AdapterMeta] | None = None) -> None:
        self.runtime = runtime
        self.encoder = encoder
        given = dict(meta or {})
        self._meta = MappingProxyType({name: self._checked_meta(name, given.get(name)) for name in runtime.adapters})
        self.mixed_batches = 0

    @property
    def adapters(self) -> Mapping[str, AdapterMeta]:
        """Read-only snapshot of the loaded adapters."""
        return self._meta

    def _checked_meta(self, name: str, meta: AdapterMeta | None) -> AdapterMeta:
        width = self.runtime.n_labels(name)
        meta = meta or AdapterMeta(())
        if not meta.labels:
            meta = replace(meta, labels=tuple(f"LABEL_{i}" for i in range(width)))
        elif len(meta.labels) != width:
            raise LorascopeError(f"adapter '{name}': {len(meta.labels)} label names recorded but its head has {width} outputs")
        return meta if meta.created else replace(meta, created=int(time.time()))

    def classify(self, jobs: list[ClassifyJob]) -> list[npt.NDArray[np.float32] | Exception]:
        """Probabilities per job, each float32 [rows, n_labels].

        A job whose adapter was unloaded gets an :class:`AdapterGone`, one with a row of no tokens an
        :class:`EmptyRow`; the other jobs of the batch are classified all the same.
        """
        meta = self._meta
        results: list[npt.NDArray[np.float32] | Exception | None] = [self._unservable(j, meta) for j in jobs]
        live = [i for i, r in enumerate(results) if r is None]
        if not live:
            return cast("list[npt.NDArray[np.float32] | Exception]", results)  # no None: every job is unservable
        rows = [r for i in live for r in jobs[i].rows]
        names = [jobs[i].adapter for i in live for _ in jobs[i].rows]
        inputs = self.encoder.pad(rows)
        ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
        # auto: one adapter in the batch -> merged weights (plain-model speed); several -> per-row BGMV.
        logits = self.runtime.predict_logits(ids, mask, names, mode="auto", **inputs)  # [rows, n_labels_max]
        self.mixed_batches += len(set(names)) > 1
        start = 0
        for i in live:
            n_rows, width = len(jobs[i].rows), len(meta[jobs[i].adapter].labels)
            part = logits[start : start + n_rows, :width].float()
            results[i] = torch.softmax(part, dim=-1).cpu().numpy()
            start += n_rows
        return cast("list[npt.NDArray[np.float32] | Exception]", results)  # every live slot now holds its probabilities

    @staticmethod
    def _unservable(job: ClassifyJob, meta: Mapping[str, AdapterMeta]) -> Exception | None:
        if job.adapter not in meta:
            return AdapterGone(f"adapter '{job.adapter}' was unloaded")
        empty = next((i for i, row in enumerate(job.rows) if not row["input_ids"]), None)
        if empty is not None:  # a zero-length row breaks the whole forward pass, not just its own answer
            return EmptyRow(f"inputs[{empty}]: no tokens to classify")
        return None

    def add(self, name: str, folder: Path, meta: AdapterMeta) -> AdapterMeta:
        """Load ``folder`` as ``name`` (worker thread). Raises LorascopeError on an unusable folder."""
        self.runtime.add_adapter(name, folder)
        try:
            checked = self._checked_meta(name, meta)
        except LorascopeError:
            self.runtime.remove_adapter(name)
            raise
        self._meta = MappingProxyType({**self._meta, name: checked})
        return checked

    def remove(self, name: str) -> None:
        """Unload ``name`` (worker thread); requests for it already queued get :class:`AdapterGone`."""
        self._meta = MappingProxyType({k: v for k, v in self._meta.items() if k != name})
        self.runtime.remove_adapter(name)
