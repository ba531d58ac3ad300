"""Where a study's units run: one after the other in this process, or as Ray tasks on a cluster.

A unit (a training run, one task's drift or lens, one HPO search) is a plain function call whose
arguments and result are small and picklable, and whose artifacts are written atomically into the
study folder. That is what lets the Ray executor send it to any worker that sees the folder: a
worker lost mid-unit leaves at most a ``.partial`` folder, Ray reruns the task elsewhere, and the
rerun resumes or redoes it (training resumes from its newest complete checkpoint), so the result
is the one an uninterrupted run gives.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from lorascope.config import StrictModel
from lorascope.errors import ConfigError


class ExecutorSettings(StrictModel):
    """How a study's units are run (the study key ``executor``)."""

    kind: Literal["local", "ray"] = Field("local", description="local: one unit after the other in this process; "
                                                               "ray: every unit a Ray task")
    address: str | None = Field(None, description="Ray cluster address (default: $RAY_ADDRESS, else a Ray started "
                                                  "on this machine)")
    local_cpus: PositiveInt | None = Field(None, description="CPUs of the Ray started on this machine (default: all)")
    cpus_per_unit: PositiveInt | None = Field(
        None, description="CPUs each unit declares to Ray and the torch threads it uses (default: 1 on Ray; torch's "
                          "own choice locally)")
    gpus_per_unit: NonNegativeFloat = Field(0.0, description="GPUs each unit declares to Ray")
    memory_gb_per_unit: NonNegativeFloat | None = Field(None, description="memory each unit declares to Ray (GB)")
    max_retries: NonNegativeInt = Field(3, description="Ray reruns of a unit whose worker died")


@dataclass(frozen=True)
class Done:
    """One finished unit: its position in the submitted list, its result, where it ran and how long it took."""

    index: int
    result: Any
    worker: str
    seconds: float


def set_threads(cpus: int | None) -> None:
    """Use ``cpus`` torch threads (None: leave torch's choice)."""
    if cpus:
        import torch

        torch.set_num_threads(cpus)


def _call(fn: Callable[..., Any], args: tuple, cpus: int | None) -> tuple[Any, str, float]:
    """Run one unit; returns its result, the worker that ran it (host:pid) and the seconds it took."""
    import socket
    import time

    set_threads(cpus)
    t0 = time.perf_counter()
    result = fn(*args)
    return result, f"{socket.gethostname()}:{os.getpid()}", time.perf_counter() - t0


class LocalExecutor:
    """Every unit in this process, in the order given."""

    kind = "local"

    def __init__(self, settings: ExecutorSettings):
        self.settings = settings

    def map(self, fn: Callable[..., Any], args: Sequence[tuple]) -> Iterator[Done]:
        for i, a in enumerate(args):
            yield Done(i, *_call(fn, a, self.settings.cpus_per_unit))

    def close(self) -> None:
        pass


class RayExecutor:
    """Every unit a Ray task, yielded as it finishes; the study folder must be visible to every worker."""

    kind = "ray"

    def __init__(self, settings: ExecutorSettings):
        try:
            import ray
        except ImportError:
            raise ConfigError("executor: ray needs Ray installed (pip install 'ray>=2.40')") from None
        self.settings = settings
        self._ray = ray
        address = settings.address or os.environ.get("RAY_ADDRESS")
        self._owns_ray = not ray.is_initialized()  # a Ray the caller started is left running
        if self._owns_ray:
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address:
                ray.init(address=address, **kwargs)
            else:
                # A Ray of this machine: a small object store, as units exchange only small results.
                ray.init(num_cpus=settings.local_cpus, object_store_memory=256 * 2**20, **kwargs)
        self._remote = ray.remote(_call)

    def map(self, fn: Callable[..., Any], args: Sequence[tuple]) -> Iterator[Done]:
        s = self.settings
        cpus = s.cpus_per_unit or 1
        options: dict[str, Any] = dict(num_cpus=cpus, max_retries=s.max_retries, num_gpus=s.gpus_per_unit)
        if s.memory_gb_per_unit:
            options["memory"] = int(s.memory_gb_per_unit * 2**30)
        pending = {self._remote.options(**options).remote(fn, a, cpus): i for i, a in enumerate(args)}
        while pending:
            ready, _ = self._ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            yield Done(index, *self._ray.get(ready[0]))

    def close(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(settings: ExecutorSettings) -> LocalExecutor | RayExecutor:
    return RayExecutor(settings) if settings.kind == "ray" else LocalExecutor(settings)
