"""The server at twice its capacity: admitted requests keep their latency, the rest get 429 (informal, not a test).

Starts ``lorascope serve`` (MiniLM, SST-2 and MRPC synthetic adapters, its own process, 1 thread) on a
loopback port and, for each admission setting, measures:

1. capacity: a closed loop of ``--clients`` clients sending one-row requests for ``--capacity-s``
   seconds: successful requests per second and the latency (p50, p99) at that load;
2. overload: an open loop offering ``--factors`` times that rate (2 and 4) for ``--overload-s``
   seconds each (up to 512 requests in flight): latency of the admitted requests (p50, p99), the
   share refused with 429, 5xx and transport errors;
3. recovery: one client for ``--recovery-s`` seconds after each load: seconds to the first 200 and
   its latency.

The settings compared: the default (``max_queue_delay_ms=1000``: no request admitted that would
make any waiting request wait more than 1 s for its answer, at the cost per row measured on recent
batches; and ``max_queue=128``), a tight bound (250 ms), and the count bound alone
(``max_queue_delay_ms=null``), which admits as many requests as fit in the queue whatever they
will wait.

Usage: python benchmarks/overload.py [--clients 8] [--capacity-s 15] [--overload-s 20] [--recovery-s 5] [--factors 2,4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from http_overhead import TASKS, lorascope_serve, machine_load

from lorascope.bench.synthetic import make_synthetic_adapters
from lorascope.data import get_task
from lorascope.models.base_recipe import open_base
from lorascope.serve.http.loadgen import LoadConfig, run_load

# label -> (server settings, the delay bound in ms or None)
SETTINGS = {"default (max_queue_delay_ms=1000)": ((), 1000.0),
            "tight (max_queue_delay_ms=250)": (("max_queue_delay_ms=250",), 250.0),
            "count bound only (max_queue_delay_ms=null)": (("max_queue_delay_ms=null",), None)}


def _ms(summary: dict[str, float | None], key: str) -> str:
    value = summary.get(key)
    return "–" if value is None else f"{value:.0f} ms"


def _print_load(factor: float, capacity: float, seconds: float, load: dict) -> None:
    refused = load["rejected_429"] / max(load["requests"], 1)
    other = load["errors"] - load["rejected_429"] - load["server_errors_5xx"]
    recovery = load["recovery"] or {}
    print(f"  {factor:g}x capacity ({factor * capacity:.1f} requests/s offered, open loop, {seconds:g} s): "
          f"{load['requests']} sent, {load['ok']} admitted and answered, {load['rejected_429']} refused with 429 "
          f"({refused:.0%}), 5xx {load['server_errors_5xx']}, other errors {other}")
    print(f"    admitted latency: p50 {_ms(load['latency_ms'], 'p50')}, p99 {_ms(load['latency_ms'], 'p99')}, "
          f"max {_ms(load['latency_ms'], 'max')}; refusals: p99 {_ms(load['rejected_latency_ms'], 'p99')}")
    print(f"    recovery: first 200 after {recovery.get('first_ok_after_s'):.3f} s, "
          f"{recovery.get('ok')} of {recovery.get('requests')} answered, "
          f"p99 {_ms(recovery.get('latency_ms') or {}, 'p99')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients of the capacity phase")
    parser.add_argument("--capacity-s", type=float, default=15.0)
    parser.add_argument("--overload-s", type=float, default=20.0)
    parser.add_argument("--recovery-s", type=float, default=5.0)
    parser.add_argument("--factors", type=lambda v: [float(x) for x in v.split(",")], default=[2.0, 4.0],
                        help="offered load as multiples of the measured capacity, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    machine_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        spec = open_base("minilm", get_task(TASKS[0]).label_names, 0)
        sources = make_synthetic_adapters(spec, TASKS, 2, Path(tmp) / "adapters", r=8, alpha=16, targets=None, seed=0)
        adapters = {s.name: str(s.folder) for s in sources}
        rows = []
        for label, (settings, bound) in SETTINGS.items():
            print(f"\n=== {label} ===")
            with lorascope_serve(adapters, 2.0, 1, settings) as url:
                run_load(LoadConfig(url=url, clients=2, duration_s=3.0))  # warm-up
                calm = run_load(LoadConfig(url=url, clients=args.clients, duration_s=args.capacity_s))
                capacity = calm["throughput_rps"]
                print(f"  capacity ({args.clients} clients, closed loop): {capacity:.1f} requests/s, "
                      f"p50 {_ms(calm['latency_ms'], 'p50')}, p99 {_ms(calm['latency_ms'], 'p99')}")
                for factor in args.factors:
                    load = run_load(LoadConfig(url=url, clients=512, duration_s=args.overload_s,
                                               rate_rps=factor * capacity, recovery_s=args.recovery_s, timeout_s=120.0))
                    _print_load(factor, capacity, args.overload_s, load)
                    rows.append((label, factor, bound, calm, load))
    print("\n=== summary: admitted p99 under overload, against the delay bound and the p99 at capacity ===")
    for label, factor, bound, calm, load in rows:
        at_capacity, over = calm["latency_ms"].get("p99"), load["latency_ms"].get("p99")
        to_bound = f"{over / bound:.2f}x the bound" if bound and over else "no bound"
        to_capacity = f"{over / at_capacity:.2f}x the p99 at capacity" if at_capacity and over else "–"
        print(f"  {label:<45} {factor:g}x: p99 {_ms(load['latency_ms'], 'p99')}: {to_bound}, {to_capacity}, "
              f"{load['rejected_429'] / max(load['requests'], 1):.0%} refused, 5xx {load['server_errors_5xx']}")
    machine_load("end")
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
