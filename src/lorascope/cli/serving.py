"""Serving commands: ``bench`` (in-process serving cost), ``serve`` (HTTP API), ``loadtest`` (HTTP load).

``register(app)`` adds them to the main ``lorascope`` command.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from lorascope.bench.config import BenchConfig
from lorascope.cli.common import (
    Command,
    assemble,
    comma_list,
    comma_named_list,
    command_class,
    config_option,
    console,
    err_console,
    json_file,
    json_option,
    print_json,
    quiet_libraries,
    settings_argument,
    user_errors,
)
from lorascope.extras import require
from lorascope.serve.http.settings import ServerSettings

TOKEN_ENV = "LORASCOPE_TOKEN"


@user_errors
def bench(
    model: Optional[str] = typer.Option(None, help="Base model: alias (minilm, smollm2, tiny-llama), tinyllama-shape, folder or Hub id."),
    adapters: Optional[list[str]] = typer.Option(
        None, "--adapter", callback=comma_named_list,
        help="name=<LoRA run folder or PEFT adapter folder>; repeat, or separate with commas (1 to 3). "
             "Default: 3 synthetic adapters."
    ),
    full_model: Optional[str] = typer.Option(None, help="Full fine-tuning run or model folder (default: the base stands in)."),
    out: Path = typer.Option(..., help="Output folder: bench.json, bench.csv (written atomically)."),
    batch_sizes: Optional[list[str]] = typer.Option(None, "--batch-size", "--batch-sizes", callback=comma_list,
                                                    help="A batch size to measure; repeat, or separate with commas."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, help="fp32 or bf16."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    endpoint: Optional[str] = typer.Option(
        None, help="Also measure a running server that speaks vLLM's classification protocol (lorascope serve, "
                   "vllm serve) at this base URL, on the same requests, beside the in-process runtime."),
    endpoint_models: Optional[list[str]] = typer.Option(
        None, "--endpoint-model", callback=comma_list,
        help="The name the endpoint serves an adapter under, as adapter=served_name, or served names in adapter "
             "order; repeat, or separate with commas (default: the adapters' own names)."),
    allow_remote: Optional[bool] = typer.Option(
        None, "--allow-remote/--loopback-only",
        help="Let --endpoint be another machine (a GPU box running vLLM); default: loopback hosts only."),
    token: Optional[str] = typer.Option(None, envvar=TOKEN_ENV, help=f"Bearer token of --endpoint (or ${TOKEN_ENV})."),
    config: Optional[Path] = config_option(),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    overrides: Optional[list[str]] = settings_argument("requests=200 warmup=20 endpoint_concurrency=1,4"),
) -> None:
    """Measure the serving cost of LoRA strategies (merged, separate, multi-adapter, mixed batches) vs full FT,
    and with --endpoint a running HTTP server on the same requests (its overhead over the in-process runtime,
    its throughput under concurrent clients, its answers against the runtime's).

    Examples:

    lorascope bench --model minilm --adapter sst2=runs/demo-sst2 --out runs/bench --batch-size 1,16

    lorascope bench --model tinyllama-shape --device cuda --dtype bf16 --out runs/bench-gpu requests=200

    lorascope bench --model minilm --adapter sst2=runs/demo-sst2 --endpoint http://127.0.0.1:8000 --out runs/bench-http
    """
    quiet_libraries()
    from lorascope.bench import BenchConfig, run_bench
    from lorascope.bench.output import endpoint_lines, endpoint_table, resources_table, results_table
    from lorascope.errors import ConfigError
    from lorascope.serve.sources import parse_named_paths

    sizes = None
    if batch_sizes:
        wrong = [x for x in batch_sizes if not x.isdigit()]
        if wrong:
            raise ConfigError(f"--batch-size {wrong[0]!r}: expected a whole number (e.g. --batch-size 1,16)")
        sizes = [int(x) for x in batch_sizes]
    options = dict(model=model, adapters=parse_named_paths(adapters) or None, full_model=full_model, batch_sizes=sizes,
                   device=device, dtype=dtype, threads=threads, endpoint=endpoint, endpoint_models=endpoint_models or None,
                   allow_remote=allow_remote)
    cfg = assemble(BenchConfig, config, options, overrides)
    result = run_bench(cfg, out, overwrite=overwrite, endpoint_token=token)
    # Piped or captured output gets the full table rather than one cut to 80 columns.
    wide = console if console.is_terminal else Console(width=170)
    wide.print(results_table(result))
    wide.print(resources_table(result))
    if result.endpoint is not None:
        wide.print(endpoint_table(result.endpoint))
        for line in endpoint_lines(result.endpoint):
            wide.print(line, highlight=False)
    for note in result.notes:
        console.print(f"[dim]note:[/] {note}")
    failed = [c.strategy for c in result.checks if not c.passed]
    for c in result.checks:
        if not c.passed:
            diff = "-" if c.max_abs_diff is None else f"{c.max_abs_diff:.3g}"
            console.print(f"[bold red]check failed:[/] {c.strategy} vs {c.compared_with}: max |Δ| {diff} "
                          f"(tolerance {c.tolerance:.0e}), agreement {c.agreement:.3f}")
    if result.endpoint is not None and not result.endpoint.check.passed:
        check = result.endpoint.check
        within = "" if check.max_abs_prob_diff is None else (f"; max |Δ prob| {check.max_abs_prob_diff:.3g} "
                                                              f"(tolerance {check.tolerance:.0e})")
        console.print(f"[bold red]check failed:[/] {result.endpoint.strategy}: {check.mismatches} of "
                      f"{check.rows} predictions differ from the in-process runtime's{within}", highlight=False)
        failed.append(result.endpoint.strategy)
    console.print(f"[bold green]done[/] {len(result.results)} rows -> {out / 'bench.json'}, {out / 'bench.csv'}")
    if failed:
        raise typer.Exit(1)



@user_errors
def serve(
    model: str = typer.Option("minilm", "--model", "--base", help="Base model: alias, tinyllama-shape, folder or Hub id."),
    adapter: Optional[list[str]] = typer.Option(None, "--adapter", callback=comma_named_list,
                                                help="name=<LoRA run folder or PEFT adapter folder>; repeat, or "
                                                     "separate with commas."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: any free port)."),
    token: Optional[str] = typer.Option(None, envvar=TOKEN_ENV, help=f"Bearer token required on /v1/* (or ${TOKEN_ENV})."),
    adapter_roots: Optional[list[Path]] = typer.Option(
        None, "--adapter-root",
        help="Folder under which POST /v1/adapters may load adapters; repeat (a path may hold a comma, so commas do "
             "not separate). Default: loading disabled."
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("fp32", help="fp32 or bf16."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads."),
    log_level: Optional[str] = typer.Option(None, help="Server log level: critical, error, warning, info or debug "
                                                       "(setting log_level; default warning)."),
    access_log: Optional[bool] = typer.Option(None, "--access-log/--no-access-log",
                                              help="One log line per request (setting access_log; default off)."),
    config: Optional[Path] = config_option(),
    overrides: Optional[list[str]] = settings_argument("max_batch_size=32 max_wait_ms=5 max_queue=64", what="Server settings"),
) -> None:
    """Serve LoRA adapters over HTTP, batching requests for different adapters together: lorascope's own
    POST /v1/classify and vLLM's protocol (POST /classify, /score, GET /v1/models, /v1/load_lora_adapter),
    with /metrics for Prometheus and /ready once the model is loaded. SIGTERM drains, then stops.

    Example:

    lorascope serve --model minilm --adapter sst2=runs/demo-sst2 --port 8000 max_wait_ms=5
    """
    require("serve", "fastapi", "uvicorn", by="lorascope serve")  # before the seconds quiet_libraries and the model take
    quiet_libraries()
    import torch

    from lorascope.serve.http import ServerSettings, build_app
    from lorascope.serve.http import serve as run_server
    from lorascope.serve.sources import parse_named_paths

    if device not in ("auto", "cpu", "cuda") or dtype not in ("fp32", "bf16"):
        from lorascope.errors import ConfigError

        raise ConfigError(f"--device {device!r} / --dtype {dtype!r}: expected auto|cpu|cuda and fp32|bf16")
    if threads:
        torch.set_num_threads(threads)
    roots = [str(p.expanduser().resolve()) for p in adapter_roots or []]
    for given, root in zip(adapter_roots or [], roots):
        if not Path(root).is_dir():  # every load under it would be refused, each with a 4xx that does not say why
            from lorascope.errors import ConfigError

            raise ConfigError(f"--adapter-root {given}: not a folder")
    settings = assemble(ServerSettings, config, dict(token=token, adapter_roots=roots or None, log_level=log_level,
                                                     access_log=access_log), overrides)
    adapters = parse_named_paths(adapter)
    # The model and adapters load before the port opens, so bad input is one line and exit 2; an
    # app built with build_app(lazy=True) opens first and answers /ready with 503 while loading.
    app = build_app(model, adapters, settings, dtype=dtype, device=device)
    if not _is_loopback(host) and settings.token is None:
        err_console.print(f"[yellow]warning:[/] listening on {host} without a token: anyone who can reach it may use it")
    names = ", ".join(adapters) or "none yet"
    console.print(f"serving {names} on http://{host}:{port} (Ctrl-C stops)")
    run_server(app, host, port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@user_errors
def loadtest(
    ctx: typer.Context,
    url: str = typer.Option("http://127.0.0.1:8000", help="Server URL (loopback hosts only)."),
    clients: int = typer.Option(8, help="Concurrent clients."),
    duration: float = typer.Option(30.0, help="Stop after this many seconds."),
    max_requests: int = typer.Option(100_000, help="Stop after this many requests."),
    rows: int = typer.Option(1, help="Inputs per request."),
    adapters: Optional[list[str]] = typer.Option(None, "--adapter", callback=comma_list,
                                                 help="Adapter name to include; repeat, or separate with commas "
                                                      "(default: all the server lists)."),
    token: Optional[str] = typer.Option(None, envvar=TOKEN_ENV, help=f"Bearer token (or ${TOKEN_ENV})."),
    data_dir: Optional[str] = typer.Option(None, help="GLUE folder for request texts (default: $GLUE_DIR, else built-in)."),
    json_out: bool = json_option(),
) -> None:
    """Load-test a running `lorascope serve` with concurrent clients mixing adapters.

    Example:

    lorascope loadtest --url http://127.0.0.1:8000 --clients 8 --duration 30 --json
    """
    require("serve", "httpx", by="lorascope loadtest")
    quiet_libraries()
    from lorascope.artifacts import write_json
    from lorascope.serve.http.loadgen import LoadConfig, run_load

    cfg = assemble(LoadConfig, None, dict(url=url, clients=clients, duration_s=duration, max_requests=max_requests, rows=rows,
                                          adapters=adapters or None, token=token, data_dir=data_dir), [])
    old_file = json_file(ctx)
    # With --json, stdout holds the JSON alone: the line that says what runs goes to stderr.
    say = err_console if json_out and old_file is None else console
    say.print(f"load test: {cfg.clients} clients -> {cfg.url} for up to {cfg.duration_s:g} s / {cfg.max_requests} requests")
    result = run_load(cfg)
    if json_out and old_file is None:
        print_json(result)
        return
    table = Table(title=f"load test: {result['url']} ({', '.join(result['adapters'])})")
    for col in ("clients", "requests", "ok", "errors", "duration s", "req/s", "rows/s", "p50 ms", "p99 ms", "stopped by"):
        table.add_column(col, justify="right")
    lat = result["latency_ms"]

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    table.add_row(str(result["clients"]), str(result["requests"]), str(result["ok"]), str(result["errors"]),
                  f"{result['duration_s']:.1f}", f"{result['throughput_rps']:.1f}", f"{result['rows_per_s']:.1f}",
                  fmt(lat["p50"]), fmt(lat["p99"]), result["stopped_by"])
    (console if console.is_terminal else Console(width=150)).print(table)
    if result["errors"]:
        console.print(f"[yellow]errors by status:[/] {result['status_counts']}")
    if old_file is not None:
        write_json(old_file, result)


def register(app: typer.Typer) -> None:
    """Add ``bench``, ``serve`` and ``loadtest`` to the ``lorascope`` command."""
    app.command(cls=command_class(BenchConfig))(bench)
    app.command(cls=command_class(ServerSettings))(serve)
    app.command(cls=Command)(loadtest)
