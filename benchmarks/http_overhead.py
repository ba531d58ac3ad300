"""What the HTTP path adds to the in-process runtime, on loopback, and where that time goes (informal, not a test).

Starts ``lorascope serve`` (a separate process, as in production) with MiniLM and synthetic adapters
on a loopback port, runs ``lorascope bench --endpoint`` against it at batch 1 and 16 (the in-process
runtime and the endpoint interleaved on the same requests, plus the concurrency sweep), and prints the
overhead ratios against the targets (at most 1.10× at batch 1, 1.05× at batch 16). It does this once
per micro-batcher wait (``max_wait_ms``: the server's default, then 0): the batcher waits that long
only for requests already admitted, so one request at a time should cost the same under both.

Then, replaying the same requests one at a time, it splits the endpoint's latency into parts, every
one measured (mean ms per request):

* in-process forward: the runtime in this process (``predict_logits``), as the bench times it;
* server forward: ``lorascope_batch_duration_seconds`` from the server's /metrics (the batch on the
  model thread: padding, forward pass, softmax, and the hop to and from that thread);
* tokenisation: the server's :class:`TextEncoder` on the same inputs, timed here (same code, same tokenizer);
* server, rest: ``lorascope_http_request_duration_seconds`` minus the two above (validation, the
  event loop, the hops of tokenisation to a thread, the batcher's wait, building the JSON answer);
* client and transport: client wall-clock minus the server's request time (client JSON encoding and
  decoding, timed here on its own too, httpx, loopback TCP, uvicorn's HTTP parsing);

and, for scale, two probes: ``GET /health`` (HTTP and the event loop with nothing else) and a
``POST /v1/classify`` for an adapter that does not exist (the same body parsed and validated, then a 404).

The in-process side is the benchmark's baseline (``lora_merged``) and ``runtime_inprocess`` only, to keep
a run to a couple of minutes on a shared 2-core machine; ``--adapters 3`` adds RTE's long pairs.

Usage: python benchmarks/http_overhead.py [--threads 1] [--requests 30] [--adapters 2] [--max-wait-ms 2 0]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil
import torch

from lorascope.bench import BenchConfig, run_bench
from lorascope.bench.endpoint import REFERENCE, build_requests
from lorascope.bench.inputs import build_pool
from lorascope.bench.output import endpoint_lines
from lorascope.bench.synthetic import make_synthetic_adapters
from lorascope.data import get_task
from lorascope.models.base_recipe import open_base
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http import TextEncoder

TASKS = ["sst2", "mrpc", "rte"]
TARGETS = {1: 1.10, 16: 1.05}
MAX_LENGTH = 384


def machine_load(label: str) -> None:
    """Load average and the busiest processes: what else shared the CPUs while this ran."""
    procs = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            pass
    time.sleep(1.0)
    busy = []
    for p in procs:
        try:
            busy.append((p.cpu_percent(None), p.pid, " ".join(p.info["cmdline"] or [p.info["name"] or "?"])[:90]))
        except psutil.Error:
            pass
    busy.sort(reverse=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"[{label}] {psutil.cpu_count()} CPUs, load average {load}; busiest processes (CPU% over 1 s):")
    for cpu, pid, cmd in busy[:6]:
        print(f"    {cpu:6.1f}%  {pid:>7}  {cmd}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def lorascope_serve(adapters: dict[str, str], max_wait_ms: float, threads: int, settings: tuple[str, ...] = ()):
    """``lorascope serve`` in its own process on a free loopback port (``settings``: more ``key=value``
    server settings); yields its URL once /ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "lorascope.cli.main", "serve", "--model", "minilm", "--port", str(port),
           "--device", "cpu", "--threads", str(threads), *[f"--adapter={n}={p}" for n, p in adapters.items()],
           f"max_wait_ms={max_wait_ms}", "max_batch_size=64", *settings]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"lorascope serve exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/ready", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("lorascope serve was not ready within 180 s")
        yield url
    finally:
        proc.terminate()  # SIGTERM: drains (nothing in flight), then stops
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


_SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? ([0-9.eE+-]+)$')


def scrape(client: httpx.Client) -> dict[tuple[str, str], float]:
    """(metric name, labels) -> value, of the server's /metrics."""
    out = {}
    for line in client.get("/metrics").text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def _sum_count(before: dict, after: dict, name: str, label_has: tuple[str, ...] = ("",)) -> tuple[float, float]:
    """(seconds, count) added to histogram ``name`` between two scrapes, over series whose labels hold any of ``label_has``."""
    total = count = 0.0
    for (metric, labels), value in after.items():
        if any(h in labels for h in label_has):
            if metric == f"{name}_sum":
                total += value - before.get((metric, labels), 0.0)
            elif metric == f"{name}_count":
                count += value - before.get((metric, labels), 0.0)
    return total, count


def breakdown(url: str, adapters: dict[str, str], batch_size: int, n: int, warmup: int) -> dict[str, float]:
    """Mean ms per request of every part of the endpoint's latency, on ``n`` requests sent one at a time."""
    names = list(adapters)
    tasks = {a: get_task(a) for a in names}
    base = open_base("minilm", tasks[names[0]].label_names, 0)
    runtime = MultiAdapterRuntime.from_folders(base.load("fp32", "cpu"), {a: Path(p) for a, p in adapters.items()})
    pool = build_pool(tasks, base, (n + warmup) * batch_size, MAX_LENGTH, None, 0)
    requests = build_requests(pool, names, {a: a for a in names}, tasks, {a: runtime.n_labels(a) for a in names},
                              batch_size, n + warmup, base, torch.device("cpu"))
    encoder = TextEncoder(base.tokenizer, base.is_decoder, MAX_LENGTH)
    parts: dict[str, list[float]] = {k: [] for k in ("inprocess", "client", "json", "tokenise", "health", "probe")}
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
        before = None
        for k, req in enumerate(requests):
            if k == warmup:
                before = scrape(client)
            inputs = dict(req.batch.inputs)
            ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
            t0 = time.perf_counter()
            runtime.predict_logits(ids, mask, req.adapter, mode="auto", **inputs)
            t1 = time.perf_counter()
            response = client.post(req.route, json=req.body)
            response.json()
            t2 = time.perf_counter()
            assert response.status_code == 200, response.text
            # What the client does with JSON, on its own: encode the body, decode the answer.
            t3 = time.perf_counter()
            json.loads(json.dumps(req.body, ensure_ascii=False, separators=(",", ":")).encode())
            json.loads(response.content)
            t4 = time.perf_counter()
            texts = req.body.get("input") or [[a, b] for a, b in zip(req.body["text_1"], req.body["text_2"])]
            encoder.pad(encoder.encode(texts))
            t5 = time.perf_counter()
            client.get("/health")
            t6 = time.perf_counter()
            probe = client.post("/v1/classify", json={"model": "no-such-adapter", "input": texts})
            t7 = time.perf_counter()
            assert probe.status_code == 404, probe.text
            if k >= warmup:
                for key, dt in (("inprocess", t1 - t0), ("client", t2 - t1), ("json", t4 - t3), ("tokenise", t5 - t4),
                                ("health", t6 - t5), ("probe", t7 - t6)):
                    parts[key].append(dt * 1e3)
        after = scrape(client)
    server_s, server_n = _sum_count(before, after, "lorascope_http_request_duration_seconds",
                                    ('route="/classify"', 'route="/score"'))
    forward_s, forward_n = _sum_count(before, after, "lorascope_batch_duration_seconds")
    out = {k: float(np.mean(v)) for k, v in parts.items()}
    out["server_request"] = server_s / server_n * 1e3
    out["server_forward"] = forward_s / forward_n * 1e3
    out["n"] = n
    return out


def print_breakdown(b: int, wait: float, d: dict[str, float]) -> None:
    rest = d["server_request"] - d["server_forward"] - d["tokenise"]
    transport = d["client"] - d["server_request"]
    print(f"  batch {b:>2}, max_wait_ms={wait:g}, {d['n']} requests one at a time (mean ms per request):")
    print(f"    endpoint, client wall-clock            {d['client']:8.3f}   ({d['client'] / d['inprocess']:.3f}× in-process)")
    print(f"    in-process forward (predict_logits)    {d['inprocess']:8.3f}")
    print(f"    server forward (batch on model thread) {d['server_forward']:8.3f}   "
          f"(+{d['server_forward'] - d['inprocess']:.3f}: padding, softmax, thread hop)")
    print(f"    tokenisation (server's TextEncoder)    {d['tokenise']:8.3f}")
    print(f"    server, rest                           {rest:8.3f}   (validation, event loop, to_thread hops, "
          f"batcher wait ≤ {wait:g}, answer JSON)")
    print(f"    client + transport                     {transport:8.3f}   (of which client JSON encode+decode "
          f"{d['json']:.3f})")
    print(f"    probes: GET /health {d['health']:.3f}; POST /v1/classify 404 (same body parsed, validated) {d['probe']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads, client and server alike")
    parser.add_argument("--requests", type=int, default=30, help="measured requests per batch size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--adapters", type=int, default=2, choices=[1, 2, 3], help="sst2, mrpc, rte: the first N")
    parser.add_argument("--max-wait-ms", type=float, nargs="+", default=[2.0, 0.0])
    parser.add_argument("--breakdown-requests", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    machine_load("start")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = open_base("minilm", get_task(TASKS[0]).label_names, 0)
        sources = make_synthetic_adapters(spec, TASKS, args.adapters, root / "adapters", r=8, alpha=16, targets=None, seed=0)
        adapters = {s.name: str(s.folder) for s in sources}
        summary = []
        for wait in args.max_wait_ms:
            with lorascope_serve(adapters, wait, args.threads) as url:
                print(f"\n=== lorascope serve --model minilm ({len(adapters)} adapters) at {url}, max_wait_ms={wait:g} ===")
                cfg = BenchConfig(model="minilm", adapters=adapters, batch_sizes=[1, 16], warmup=args.warmup,
                                  requests=args.requests, threads=args.threads, strategies=["lora_merged"], endpoint=url,
                                  endpoint_concurrency=[1, 4], bootstrap_resamples=1000, device="cpu")
                t0 = time.time()
                record = run_bench(cfg, root / f"bench-{wait:g}", show_progress=False)
                print(f"bench: {time.time() - t0:.0f} s")
                assert record.endpoint is not None  # an endpoint was given
                for line in endpoint_lines(record.endpoint):
                    print("  " + line)
                bench = record.as_json()
                for r in bench["endpoint"]["concurrency"]:
                    print(f"  batch {r['batch_size']:>2}, {r['concurrency']} clients: {r['throughput_rps']:.1f} rows/s "
                          f"({r['throughput_vs_inprocess']:.2f}× in-process one-at-a-time), p50 {r['p50_ms']:.2f} ms, "
                          f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}")
                ref = {r["batch_size"]: r for r in bench["results"] if r["strategy"] == REFERENCE}
                print("  in-process strategies, mean ms: " + "; ".join(
                    f"{r['strategy']} b{r['batch_size']} {r['mean_ms']:.2f}" for r in bench["results"]
                    if r["strategy"] not in (REFERENCE, bench["endpoint"]["strategy"])))
                for o in bench["endpoint"]["overhead"]:
                    b = o["batch_size"]
                    met = o["overhead_ratio"] <= TARGETS[b]
                    summary.append((wait, b, o["overhead_ratio"], o["overhead_ci_low"], o["overhead_ci_high"], met,
                                    ref[b]["mean_seq_len"]))
                print("  where the time goes:")
                for b in (1, 16):
                    print_breakdown(b, wait, breakdown(url, adapters, b, args.breakdown_requests, 3))
        print("\n=== summary: endpoint / in-process mean latency (paired 95% interval), target ===")
        for wait, b, ratio, low, high, met, seq in summary:
            print(f"  max_wait_ms={wait:<3g} batch {b:>2} (mean padded length {seq:.1f}): {ratio:.3f}× [{low:.3f}, {high:.3f}]"
                  f"  target ≤ {TARGETS[b]:.2f}×: {'met' if met else 'NOT met'}")
    machine_load("end")
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
