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
    second = batcher.admit(2)  # 10 rows waiting: 0.10 s, at the bound
    with pytest.raises(QueueFull, match="would take about 0.11 s"):
        batcher.admit(1)
    first.release()  # a batch took the first request: 2 rows wait, so there is room again
    assert batcher.waiting == 1 and batcher.waiting_rows == 2
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
