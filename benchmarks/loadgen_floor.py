"""What the load generator and the HTTP stack add on their own, without a model (informal, not a test).

``benchmarks/overload.py`` reads latency at the load generator. Those figures are only the server's
if the generator (one asyncio event loop with httpx, up to 512 connections, in one process) and the
HTTP path add little. This runs the same generator, :func:`lorascope.serve.http.loadgen.run_load`,
against a stub: uvicorn serving the same two routes (``GET /v1/adapters``, ``POST /v1/classify``)
on one thread. The stub answers each request after exactly ``--service-ms`` of ``asyncio.sleep``.
A sleep uses no CPU and any number of requests can wait at once, so an ideal client sees
``service-ms`` at every rate.

For each offered rate, in an open loop as in the overload benchmark, it prints:

- the latency the generator observes, and its excess over ``service-ms``;
- the CPU time per request of the generator's process and of the stub's;
- the requests it could not send because 512 were already in flight.

Usage: python benchmarks/loadgen_floor.py [--service-ms 20] [--seconds 8] [--rates 25,50,100,200,400]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time

from http_overhead import machine_load

from lorascope.serve.http.loadgen import LoadConfig, run_load

STUB = textwrap.dedent("""
    import asyncio, sys
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    import uvicorn

    SERVICE_S = float(sys.argv[2]) / 1e3
    ADAPTERS = {"adapters": [{"name": "sst2-a", "task": "sst2", "input_shape": "single"}]}

    async def adapters(request):
        return JSONResponse(ADAPTERS)

    async def classify(request):
        body = await request.json()
        await asyncio.sleep(SERVICE_S)
        return JSONResponse({"adapter": body["adapter"], "predictions": [{"label": "positive", "score": 0.9}
                                                                          for _ in body["inputs"]]})

    app = Starlette(routes=[Route("/v1/adapters", adapters), Route("/v1/classify", classify, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service-ms", type=float, default=20.0, help="the stub's fixed service time")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each offered rate")
    parser.add_argument("--rates", default="25,50,100,200,400", help="offered requests per second, comma-separated")
    args = parser.parse_args()
    machine_load("start")
    port = _free_port()
    stub = subprocess.Popen([sys.executable, "-c", STUB, str(port), str(args.service_ms)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # up within 10 s
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        run_load(LoadConfig(url=url, clients=8, duration_s=2.0))  # warm-up
        print(f"stub service time {args.service_ms:g} ms (asyncio.sleep, no CPU); open loop, up to 512 in flight, "
              f"{args.seconds:g} s per rate")
        print(f"{'offered/s':>9} {'answered/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'p99 excess':>10} "
              f"{'client CPU ms/req':>17} {'stub CPU ms/req':>15} {'not sent':>8}")
        for rate in (float(r) for r in args.rates.split(",")):
            client0, stub0 = _self_cpu_s(), _cpu_s(stub.pid)
            result = run_load(LoadConfig(url=url, clients=512, duration_s=args.seconds, rate_rps=rate, timeout_s=60.0))
            n = max(result["requests"], 1)
            client_ms, stub_ms = (_self_cpu_s() - client0) / n * 1e3, (_cpu_s(stub.pid) - stub0) / n * 1e3
            lat = result["latency_ms"]
            print(f"{rate:9.0f} {result['throughput_rps']:10.1f} {lat['p50']:7.1f} {lat['p99']:7.1f} "
                  f"{lat['p99'] - args.service_ms:10.1f} {client_ms:17.2f} {stub_ms:15.2f} {result['not_sent']:8d}")
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    machine_load("end")


if __name__ == "__main__":
    main()
