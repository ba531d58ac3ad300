"""An asyncio micro-batcher: requests arriving together run as one batch on one worker thread.

Requests queue up; a collector takes the first, then keeps taking more until ``max_rows`` rows are
gathered or ``max_wait_ms`` has passed, and hands the whole list to ``process`` on a single worker
thread. The collector waits only for requests it knows are coming: admitted ones (see below) still
being tokenised. A lone request runs at once, since waiting for requests nobody has sent only
adds latency; while a batch runs, new requests queue, so under load batches fill up by themselves.
A request is never split: one that would overflow the batch starts the next one.

The worker is one thread because the model runtime is not thread-safe; :meth:`MicroBatcher.exclusive`
runs other runtime operations (loading and unloading adapters) on the same thread, between batches.
``process`` returns one result *or exception* per request, so one bad request never fails the
others in its batch.

The wait is bounded: a request first takes a :class:`Ticket` (:meth:`MicroBatcher.admit`), which
counts it (and its rows) as *waiting* until a batch takes it. ``admit`` raises :class:`QueueFull`
at once when ``max_queue`` requests are waiting, or when admitting it would make a request wait
more than ``max_delay_ms`` from its admission to its answer (:meth:`MicroBatcher.expected_wait`):
the rest of the batch running, the rows waiting, then its own, at the recent cost per row, and the
time the oldest request of the batch it joins has waited already (every request of a batch is
answered at its end). That cost is measured on the batches run,
so the bound follows the model and the machine, and it is the time from one batch's end to the
next's, not the forward pass alone: rows leave the queue at that pace, which also pays for
collecting, answering and whatever else shares the cores. Under overload a client hears "come back
later" straight away instead of joining a queue that grows without end, and an admitted request's
latency stays near the bound however hard the server is pushed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

P = TypeVar("P")
R = TypeVar("R")


class QueueFull(Exception):
    """``max_queue`` requests are already waiting for a forward pass."""


class Ticket:
    """One admitted request's place in the queue; it stops counting as waiting once released (idempotent)."""

    __slots__ = ("_batcher", "_held", "_rows", "admitted_at")

    def __init__(self, batcher: MicroBatcher[Any, Any], rows: int) -> None:
        self._batcher, self._held, self._rows = batcher, True, rows
        self.admitted_at = time.perf_counter()

    @property
    def held(self) -> bool:
        """Whether the request still counts as waiting."""
        return self._held

    def release(self) -> None:
        """Stop counting this request as waiting (a batch took it, or it was abandoned)."""
        if self._held:
            self._held = False
            self._batcher.waiting -= 1
            self._batcher.waiting_rows -= self._rows


@dataclass
class _Pending(Generic[P]):
    payload: P
    rows: int
    future: asyncio.Future[Any] = field(repr=False)
    ticket: Ticket | None = field(default=None, repr=False)


class MicroBatcher(Generic[P, R]):
    """Collects concurrent requests into batches for ``process``.

    Args:
        process: Worker-thread function: list of payloads -> list (same length) of results or exceptions.
        max_rows: Most rows per batch.
        max_wait_ms: Longest wait for admitted requests still on their way once one is queued.
        max_queue: Most admitted requests waiting for a batch (None: unbounded).
        max_delay_ms: Most expected time to the answer, at the recent cost per row, of a request admitted
            while others wait (None: no bound); see :meth:`expected_wait`.
        on_batch: Called after each batch with (requests, rows, seconds the forward pass took).

    Attributes:
        waiting, waiting_rows: Admitted requests not yet taken into a batch, and their rows.
        row_seconds: Recent seconds per row served, batch end to batch end (an average over the last
            batches; None before the first).
        batches, rows: Batches run and rows classified so far.
    """

    def __init__(self, process: Callable[[list[P]], list[R | BaseException]], max_rows: int, max_wait_ms: float,
                 max_queue: int | None = None, on_batch: Callable[[int, int, float], None] | None = None,
                 max_delay_ms: float | None = None) -> None:
        self.process = process
        self.max_rows = max_rows
        self.max_wait_s = max_wait_ms / 1e3
        self.max_queue = max_queue
        self.max_delay_s = None if max_delay_ms is None else max_delay_ms / 1e3
        self.on_batch = on_batch
        self.waiting = 0
        self.waiting_rows = 0
        self.row_seconds: float | None = None
        self._last_end: float | None = None
        self._running_rows, self._running_since = 0, 0.0
        self._admitted: deque[Ticket] = deque()  # in admission order; released ones leave from the front
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorascope-model")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Pending[P]] | None = None
        self._carry: deque[_Pending[P]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        """Start collecting on the running event loop (idempotent; restarts on a new loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        self._loop, self._queue, self._carry = loop, asyncio.Queue(), deque()
        self._task = loop.create_task(self._collect(), name="lorascope-batcher")

    async def stop(self) -> None:
        """Stop collecting; queued requests get ``asyncio.CancelledError``."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for pending in [*self._carry, *self._drain()]:
            if pending.ticket is not None:
                pending.ticket.release()
            if not pending.future.done():
                pending.future.cancel()
        self._task = None

    def close(self) -> None:
        """Shut the worker thread down (after :meth:`stop`)."""
        self.executor.shutdown(wait=True, cancel_futures=True)

    def admit(self, rows: int = 1) -> Ticket:
        """A place in the queue for one request of ``rows`` rows, to pass to :meth:`submit` (release it
        if never submitted).

        Raises:
            QueueFull: When ``max_queue`` requests are waiting already, or with this request a
                request would wait more than ``max_delay_ms`` for its answer (:meth:`expected_wait`).
                A request arriving when none waits is always admitted, however large.
        """
        while self._admitted and not self._admitted[0].held:
            self._admitted.popleft()
        if self.max_queue is not None and self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests are waiting for the model, the most allowed")
        if self.max_delay_s is not None and self.row_seconds is not None and self.waiting:
            expected = self.expected_wait(rows)
            if expected > self.max_delay_s:
                raise QueueFull(f"with this one, a request would wait about {expected:.2f} s for its answer (the "
                                f"{self.waiting} waiting first), more than the {self.max_delay_s * 1e3:g} ms allowed")
        self.waiting += 1
        self.waiting_rows += rows
        ticket = Ticket(self, rows)
        self._admitted.append(ticket)
        return ticket

    def expected_wait(self, rows: int) -> float:
        """The longest any waiting request would wait, from its admission to its answer, if a request
        of ``rows`` rows were admitted now (seconds, at the recent cost per row).

        The answer comes once what is left of the running batch and the rows waiting, this one's
        included, have run. Every request of a batch is answered at its end, so a request that joins
        the next batch delays the ones already in it: the oldest of them has waited longest.
        """
        now = time.perf_counter()
        cost = self.row_seconds or 0.0
        left = max(0.0, self._running_rows * cost - (now - self._running_since))
        answered_in = left + (self.waiting_rows + rows) * cost
        if self.waiting_rows + rows > self.max_rows:  # it starts a later batch: those ahead keep theirs
            return answered_in
        return answered_in + (now - self._admitted[0].admitted_at if self._admitted else 0.0)

    async def submit(self, payload: P, rows: int, ticket: Ticket | None = None) -> R:
        """Queue ``payload`` (``rows`` rows) and wait for its result; re-raises its exception.

        ``ticket`` (from :meth:`admit`) is released when a batch takes the request.
        """
        self.start()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._started_queue().put(_Pending(payload, rows, future, ticket))
        return await future

    def _started_queue(self) -> asyncio.Queue[_Pending[P]]:
        if self._queue is None:
            raise RuntimeError("the batcher is not started: call start() on the event loop first")
        return self._queue

    async def exclusive(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the worker thread, never during a batch."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _drain(self) -> list[_Pending[P]]:
        items = []
        while self._queue is not None and not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def _next(self, timeout: float | None) -> _Pending[P] | None:
        if self._carry:
            return self._carry.popleft()
        queue = self._started_queue()
        if not queue.empty():  # already queued: take it without waiting (even when max_wait is 0)
            return queue.get_nowait()
        if timeout is None:
            return await queue.get()
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            return None

    def _coming(self, batch: list[_Pending[P]]) -> bool:
        """Whether admitted requests other than ``batch``'s have not yet been taken into a batch."""
        return self.waiting > sum(1 for p in batch if p.ticket is not None and p.ticket.held)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle_from = time.perf_counter()
            first = await self._next(None)
            assert first is not None  # without a timeout, _next waits until there is one
            taken = time.perf_counter()
            # This batch's share of the time: from the previous batch's end, less any wait for a request.
            since = taken if self._last_end is None else self._last_end + (taken - idle_from)
            batch = [first]
            rows = first.rows
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_rows:
                wait = max(0.0, deadline - loop.time()) if self._coming(batch) else 0.0
                item = await self._next(wait)
                if item is None:
                    break
                if rows + item.rows > self.max_rows:
                    self._carry.append(item)
                    break
                batch.append(item)
                rows += item.rows
            await self._run(batch, rows, since)

    async def _run(self, batch: list[_Pending[P]], rows: int, since: float) -> None:
        for pending in batch:
            if pending.ticket is not None:
                pending.ticket.release()
        live = [p for p in batch if not p.future.cancelled()]  # clients that gave up cost nothing
        if not live:
            return
        rows = sum(p.rows for p in live)
        started = time.perf_counter()
        self._running_rows, self._running_since = rows, started
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self.process, [p.payload for p in live])
        except Exception as err:  # a bug in process: fail this batch, keep serving
            results = [err] * len(live)
        finally:
            self._running_rows = 0
        ended = time.perf_counter()
        self.batches += 1
        self.rows += rows
        # Seconds per row from the previous batch's end to this one's (less idle time), averaged
        # over about the last 8 batches: under load it is the pace at which the rows waiting are served.
        per_row = (ended - since) / max(rows, 1)
        self._last_end = ended
        self.row_seconds = per_row if self.row_seconds is None else 0.875 * self.row_seconds + 0.125 * per_row
        if self.on_batch is not None:
            self.on_batch(len(live), rows, ended - started)
        for pending, result in zip(live, results):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
