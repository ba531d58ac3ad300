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
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from lorascope.config import StrictModel
from lorascope.errors import ConfigError

# How long a Ray address may take to accept a connection before the study gives up on it:
# a live head node answers in milliseconds, while ray.init would retry a dead one for minutes.
RAY_CONNECT_TIMEOUT_S = 5.0
# The ports Ray listens on when an address names none: the GCS (ray start --head), Ray Client.
_RAY_DEFAULT_PORTS = {"": 6379, "ray": 10001}


class ExecutorSettings(StrictModel):
    """How a study's units are run (the study key ``executor``)."""

    kind: Literal["local", "ray"] = Field(default="local", description="local: one unit after the other in this process; "
                                                                       "ray: every unit a Ray task")
    address: str | None = Field(default=None, description="Ray cluster address (default: $RAY_ADDRESS, else a Ray started "
                                                          "on this machine)")
    local_cpus: PositiveInt | None = Field(default=None, description="CPUs of the Ray started on this machine (default: all)")
    cpus_per_unit: PositiveInt | None = Field(
        default=None, description="CPUs each unit declares to Ray and the torch threads it uses (default: 1 on Ray; torch's "
                                  "own choice locally)")
    gpus_per_unit: NonNegativeFloat = Field(default=0.0, description="GPUs each unit declares to Ray")
    memory_gb_per_unit: NonNegativeFloat | None = Field(default=None, description="memory each unit declares to Ray (GB)")
    max_retries: NonNegativeInt = Field(default=3, description="Ray reruns of a unit whose worker died")


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


def _call(fn: Callable[..., Any], args: tuple[Any, ...], cpus: int | None) -> tuple[Any, str, float]:
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

    def map(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> Iterator[Done]:
        for i, a in enumerate(args):
            yield Done(i, *_call(fn, a, self.settings.cpus_per_unit))

    def close(self) -> None:
        pass


def ray_address(settings: ExecutorSettings) -> tuple[str | None, str]:
    """The Ray address a study connects to and where it was set: (``executor.address`` or
    ``$RAY_ADDRESS``, which), or (None, "") for a Ray started on this machine."""
    if settings.address:
        return settings.address, "executor.address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "$RAY_ADDRESS"
    return None, ""


def _host_port(address: str, where: str) -> tuple[str, int] | None:
    """(host, port) to probe for ``host:port``, ``[v6]:port`` or ``ray://host:port``; None for
    addresses Ray resolves itself (``auto``, ``local``, other URL schemes)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    if address in ("auto", "local") or scheme not in _RAY_DEFAULT_PORTS:
        return None
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host or (port_text and not port_text.isdigit()) or (port_text and not 0 < int(port_text) < 65536):
        raise ConfigError(f"{where} {address!r}: expected host:port (e.g. 10.0.0.5:6379) or ray://host:port")
    return host, int(port_text) if port_text else _RAY_DEFAULT_PORTS[scheme]


def check_executor(settings: ExecutorSettings, timeout_s: float | None = None) -> None:
    """What would otherwise stop a study only after its folder exists, or hang it: Ray not installed,
    or a Ray address where no Ray answers within ``timeout_s`` seconds.

    ``ray.init`` on a dead address retries for minutes, printing Ray's own logs, before it fails;
    this probe (:func:`probe_grpc`) takes at most ``timeout_s`` (default :data:`RAY_CONNECT_TIMEOUT_S`).

    Raises:
        ConfigError: naming the setting (``executor.address`` or ``$RAY_ADDRESS``) and the address.
    """
    import importlib.util

    if settings.kind != "ray":
        return
    timeout_s = RAY_CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    if importlib.util.find_spec("ray") is None:
        from lorascope.extras import install_command

        raise ConfigError(f"executor: ray needs the ray extra: {install_command('ray')} (missing: ray)")
    address, where = ray_address(settings)
    target = _host_port(address, where) if address else None
    if target is None:
        return
    # A TLS cluster expects a TLS handshake first: there, a connection is all that is checked.
    problem = probe_grpc(*target, timeout_s=timeout_s, handshake=os.environ.get("RAY_USE_TLS", "0") in ("", "0"))
    if problem:
        raise ConfigError(f"{where} {address!r}: no Ray cluster at {target[0]}:{target[1]} ({problem}); "
                          "start one with 'ray start --head' or fix the address")


# The HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113, sections 3.4 and 6.5).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def probe_grpc(host: str, port: int, timeout_s: float, handshake: bool = True) -> str | None:
    """Whether a gRPC server (Ray's GCS and Ray Client are) answers at host:port within ``timeout_s``.

    A TCP connection alone proves little: a firewall or proxy may accept any connection and
    then never answer. So the client's HTTP/2 preface is sent and the server's own first frame,
    a SETTINGS frame, awaited; nothing else is sent, and the connection is closed.

    Returns:
        None when one answers, else what went wrong (``Connection refused``, ``no answer within 5 s``).
    """
    import socket

    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            if not handshake:
                return None
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:  # a frame header: length (3 bytes), type, flags, stream id (4)
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    return "it closed the connection without answering as Ray does (gRPC)"
                head += chunk
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as err:
        return err.strerror or err.__class__.__name__
    if head[3] != _H2_SETTINGS:
        return "something answers there, but not as Ray does (gRPC)"
    return None


class RayExecutor:
    """Every unit a Ray task, yielded as it finishes; the study folder must be visible to every worker."""

    kind = "ray"

    def __init__(self, settings: ExecutorSettings):
        check_executor(settings)  # Ray installed; an address to connect to answers
        import ray

        self.settings = settings
        self._ray = ray
        address, _ = ray_address(settings)
        self._owns_ray = not ray.is_initialized()  # a Ray the caller started is left running
        if self._owns_ray:
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address:
                ray.init(address=address, **kwargs)
            else:
                # A Ray of this machine: a small object store, as units exchange only small results.
                ray.init(num_cpus=settings.local_cpus, object_store_memory=256 * 2**20, **kwargs)
        self._remote = ray.remote(_call)

    def map(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> Iterator[Done]:
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
    """The executor ``settings`` name: Ray's, or the local one."""
    return RayExecutor(settings) if settings.kind == "ray" else LocalExecutor(settings)
