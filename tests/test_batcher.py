"""The micro-batcher waits only for requests it knows are coming."""

from __future__ import annotations

import asyncio
import time

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
