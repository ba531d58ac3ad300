"""The micro-batcher waits only for requests it knows are coming."""

from __future__ import annotations

import asyncio
import time

import pytest

from lorascope.serve.http.batcher import MicroBatcher


def _batcher(max_wait_ms: float) -> tuple[MicroBatcher[int, int], list[list[int]]]:
    batches: list[list[int]] = []

    def process(payloads: list[int]) -> list[int | BaseException]:
        batches.append(list(payloads))
        return [p * 10 for p in payloads]

    return MicroBatcher(process, max_rows=8, max_wait_ms=max_wait_ms), batches


def test_a_lone_request_runs_without_waiting_out_the_window():
    batcher, batches = _batcher(max_wait_ms=2000)

    async def one() -> tuple[int, float]:
        started = time.perf_counter()
        result = await batcher.submit(1, 1, batcher.admit())
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return result, elapsed

    result, elapsed = asyncio.run(one())
    batcher.close()
    assert result == 10 and batches == [[1]]
    assert elapsed < 1.0, f"a lone request waited {elapsed:.2f} s of the 2 s window"


def test_admitted_requests_still_on_their_way_join_the_batch():
    batcher, batches = _batcher(max_wait_ms=2000)

    async def two() -> list[int]:
        first, second = batcher.admit(), batcher.admit()  # both admitted; the second is still "tokenising"

        async def late() -> int:
            await asyncio.sleep(0.05)
            return await batcher.submit(2, 1, second)

        results = await asyncio.gather(batcher.submit(1, 1, first), late())
        await batcher.stop()
        return list(results)

    assert asyncio.run(two()) == [10, 20]
    batcher.close()
    assert batches == [[1, 2]]


def test_an_unadmitted_request_does_not_hold_a_batch():
    batcher, batches = _batcher(max_wait_ms=2000)

    async def run() -> float:
        started = time.perf_counter()
        await batcher.submit(3, 1)  # no ticket: nothing is known to be coming
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(run()) < 1.0
    batcher.close()
    assert batches == [[3]]


def test_admission_refuses_a_request_that_would_wait_longer_than_the_delay_bound():
    from lorascope.serve.http.batcher import QueueFull

    batcher, _ = _batcher(max_wait_ms=0)
    batcher.max_delay_s = 0.1
    batcher.row_seconds = 0.01  # as measured on recent batches: 10 ms a row
    first = batcher.admit(8)  # an empty queue admits whatever the size
    second = batcher.admit(1)  # 9 rows waiting: 0.09 s, under the bound
    with pytest.raises(QueueFull, match="would wait about 0.11 s"):
        batcher.admit(2)
    first.release()  # a batch took the first request: 1 row waits, so there is room again
    assert batcher.waiting == 1 and batcher.waiting_rows == 1
    batcher.admit(8).release()
    second.release()
    assert batcher.waiting == 0 and batcher.waiting_rows == 0
    batcher.close()


def test_the_cost_per_row_is_measured_on_the_batches_run():
    batcher, _ = _batcher(max_wait_ms=0)

    async def some() -> None:
        await asyncio.gather(*(batcher.submit(i, 1, batcher.admit()) for i in range(4)))
        await batcher.stop()

    assert batcher.row_seconds is None
    asyncio.run(some())
    batcher.close()
    assert batcher.row_seconds is not None and 0 < batcher.row_seconds < 1.0


def test_the_cost_per_row_counts_the_time_between_batches_under_load():
    """The queue drains at one row per (forward + everything between forwards), not per forward alone."""

    def process(payloads: list[int]) -> list[int | BaseException]:
        time.sleep(0.02)  # the forward pass: 20 ms a row (one row per batch below)
        return list(payloads)

    def between(requests: int, rows: int, seconds: float) -> None:
        time.sleep(0.03)  # work on the event loop after each batch (answering, parsing): 30 ms

    batcher = MicroBatcher(process, max_rows=1, max_wait_ms=0, on_batch=between)

    async def loaded() -> None:
        await asyncio.gather(*(batcher.submit(i, 1, batcher.admit()) for i in range(12)))
        await batcher.stop()

    asyncio.run(loaded())
    batcher.close()
    # 50 ms a row from one batch's end to the next; the forward alone would say 20 ms.
    assert batcher.row_seconds is not None and batcher.row_seconds > 0.035


def test_idle_time_between_requests_is_not_a_cost():
    batcher, _ = _batcher(max_wait_ms=0)

    async def spaced() -> None:
        for i in range(4):
            await batcher.submit(i, 1, batcher.admit())
            await asyncio.sleep(0.2)  # nobody is asking: the model is idle, not slow
        await batcher.stop()

    asyncio.run(spaced())
    batcher.close()
    assert batcher.row_seconds is not None and batcher.row_seconds < 0.05


def test_admission_counts_what_is_left_of_the_batch_running():
    from lorascope.serve.http.batcher import QueueFull

    def process(payloads: list[int]) -> list[int | BaseException]:
        time.sleep(0.1 * sum(payloads))  # 100 ms a row; each payload is its row count
        return list(payloads)

    batcher = MicroBatcher(process, max_rows=8, max_wait_ms=0, max_delay_ms=500)

    async def scenario() -> None:
        await batcher.submit(1, 1, batcher.admit(1))  # learns the cost: about 100 ms a row
        running = asyncio.create_task(batcher.submit(4, 4, batcher.admit(4)))
        await asyncio.sleep(0.02)  # the 4-row batch runs: about 380 ms of it left
        alone = batcher.admit(1)  # nothing waits: admitted whatever the wait
        # Left of the running batch + 2 rows: about 0.58 s > 0.5 s. The queue alone (0.2 s) would admit it.
        with pytest.raises(QueueFull, match=r"would wait about 0\.[5-9]\d s"):
            batcher.admit(1)
        alone.release()
        await running
        await batcher.stop()

    asyncio.run(scenario())
    batcher.close()


def test_admission_counts_the_wait_a_request_adds_to_those_already_waiting():
    """Every request of a batch is answered at its end: joining the next batch delays its oldest request."""
    from lorascope.serve.http.batcher import QueueFull

    batcher, _ = _batcher(max_wait_ms=0)
    batcher.max_delay_s = 0.5
    batcher.row_seconds = 0.1
    first = batcher.admit(1)  # admitted, still being tokenised
    time.sleep(0.35)
    # Alone it would be answered in 0.2 s, but the first request would then have waited 0.55 s.
    with pytest.raises(QueueFull, match=r"would wait about 0\.[5-9]\d s"):
        batcher.admit(1)
    batcher.row_seconds = 0.1 / 8  # a faster model: 0.35 + 2 rows at 12.5 ms fits in 0.5 s
    batcher.admit(1).release()
    first.release()
    batcher.close()
