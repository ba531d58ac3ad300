"""The study's serving benchmark: up to three trained LoRA adapters and the first task's full
fine-tuned model, on the tasks' dev requests.

Adapters are those of the primary LoRA method (see ``lorascope.variants``), first seed, one per
task with as many labels as the first task (PEFT holds every adapter on one base head); a study
with fewer than three such tasks fills the remaining slots with other seeds' adapters of them, so
that the 2- and 3-adapter strategies (switching, mixed batches) are measured on trained adapters
rather than skipped. Latency depends on the adapters' shapes, which seeds share; their requests
come from each run's own task.
"""

from __future__ import annotations

from pathlib import Path

from lorascope.config import build_config
from lorascope.run_folder import RunFolder
from lorascope.study.context import StageContext
from lorascope.study.layout import StudyLayout
from lorascope.study.units import TrainUnit
from lorascope.variants import primary_label


def _finished(folder: Path) -> bool:
    return RunFolder.holds_run(folder) and RunFolder(folder).record().ok


def primary_lora(ctx: StageContext) -> str | None:
    """The study's primary LoRA method (``lora``, else its first LoRA variant), None without one."""
    return primary_label({m: ctx.cfg.method_of(m) for m in ctx.cfg.methods})


def _labels(folder: Path) -> int | None:
    """How many labels a finished run's head has (None when its record does not say)."""
    names = RunFolder(folder).record().label_names
    return len(names) if names else None


def trained_adapters(ctx: StageContext, limit: int = 3) -> tuple[dict[str, str], dict[str, int]]:
    """name -> run folder of up to ``limit`` finished runs of the primary LoRA method: first seed of
    every task, then other seeds; and task -> label count of the tasks left out for their head.

    PEFT holds every adapter on one base model, whose classification head has one width: the
    adapters are those whose tasks have as many labels as the first one found (a 3-class task
    beside binary ones is left out, and named, rather than failing the stage).
    """
    lora = primary_lora(ctx)
    if lora is None:
        return {}, {}
    first = [(task, ctx.cfg.seeds[0]) for task in ctx.cfg.tasks]
    rest = [(task, seed) for seed in ctx.cfg.seeds[1:] for task in ctx.cfg.tasks]
    adapters: dict[str, str] = {}
    width: int | None = None
    left_out: dict[str, int] = {}
    for task, seed in first + rest:
        folder = TrainUnit(task, lora, seed).folder(ctx.out)
        if len(adapters) >= limit or not _finished(folder):
            continue
        labels = _labels(folder)
        width = width if width is not None else labels
        if labels is not None and labels != width:
            left_out[task] = labels
            continue
        adapters[task if task not in adapters else f"{task}-s{seed}"] = str(folder)
    return adapters, left_out


def run_bench_stage(ctx: StageContext) -> None:
    """Benchmark serving the study's trained LoRA adapters (synthetic ones without any) into the bench folder.

    The full fine-tuning run of the first task and seed is served too where it finished. Skipped when
    ``bench.json`` exists. The served inputs are truncated as the models were trained unless the
    study's bench settings set ``max_length``.
    """
    from lorascope.bench import BenchConfig, run_bench

    out = StudyLayout(ctx.out).bench
    if (out / "bench.json").is_file():
        ctx.console.print("  bench: done earlier")
        return
    seed = ctx.cfg.seeds[0]
    adapters, left_out = trained_adapters(ctx)
    full = TrainUnit(ctx.cfg.tasks[0], "full", seed).folder(ctx.out)
    b = ctx.cfg.bench
    # The served inputs are truncated as the models were trained, unless the study says otherwise.
    max_length = b.max_length or ctx.cfg.train_config(ctx.cfg.tasks[0], ctx.cfg.methods[0], seed).max_length
    settings = dict(model=ctx.cfg.model, adapters=adapters, batch_sizes=b.batch_sizes, requests=b.requests,
                    warmup=b.warmup, max_length=max_length, **b.overrides)
    if "full" in ctx.cfg.methods and _finished(full):
        settings["full_model"] = str(full)
    cfg = build_config(BenchConfig, settings, source=f"study '{ctx.cfg.name}' bench settings")
    what = f"{len(adapters)} trained adapter(s)" if adapters else "synthetic adapters (no finished LoRA runs)"
    ctx.console.print(f"  bench: {ctx.cfg.model} with {what}, batch sizes {b.batch_sizes}")
    if left_out:
        served = _labels(Path(next(iter(adapters.values()))))
        ctx.console.print(f"  bench: left out the adapters of {', '.join(f'{t} ({n} labels)' for t, n in left_out.items())}: "
                          f"the served adapters' heads have {served} labels, and PEFT holds every adapter on one base head")
    bench = run_bench(cfg, out, show_progress=False)
    for r in bench.results:
        if r.strategy in ("lora_separate", "runtime_single", "runtime_mixed3") and r.ratio_to_merged and r.mean_ms:
            ctx.console.print(f"    {r.strategy:<16} batch {r.batch_size:>2}: {r.mean_ms:.2f} ms, "
                              f"{r.ratio_to_merged:.3f}× merged")
