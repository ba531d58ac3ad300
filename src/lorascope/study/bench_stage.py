"""The study's serving benchmark: the trained LoRA adapters of the first seed (one per task, up
to three) and the first task's full fine-tuned model, on the tasks' dev requests."""

from __future__ import annotations

import json

from lorascope.study.stages import StageContext
from lorascope.study.units import TrainUnit


def _finished(folder) -> bool:
    path = folder / "metrics.json"
    return path.is_file() and json.loads(path.read_text()).get("status") == "ok"


def run_bench_stage(ctx: StageContext) -> None:
    from lorascope.bench import BenchConfig, run_bench

    out = ctx.out / "bench"
    if (out / "bench.json").is_file():
        ctx.console.print("  bench: done earlier")
        return
    seed = ctx.cfg.seeds[0]
    adapters = {}
    for task in ctx.cfg.tasks[:3]:
        folder = TrainUnit(task, "lora", seed).folder(ctx.out)
        if "lora" in ctx.cfg.methods and _finished(folder):
            adapters[task] = str(folder)
    full = TrainUnit(ctx.cfg.tasks[0], "full", seed).folder(ctx.out)
    b = ctx.cfg.bench
    settings = dict(model=ctx.cfg.model, adapters=adapters, batch_sizes=b.batch_sizes, requests=b.requests,
                    warmup=b.warmup, max_length=ctx.cfg.drift.max_length, **b.overrides)
    if "full" in ctx.cfg.methods and _finished(full):
        settings["full_model"] = str(full)
    cfg = BenchConfig.model_validate(settings)
    what = f"{len(adapters)} trained adapter(s)" if adapters else "synthetic adapters (no finished LoRA runs)"
    ctx.console.print(f"  bench: {ctx.cfg.model} with {what}, batch sizes {b.batch_sizes}")
    bench = run_bench(cfg, out, show_progress=False)
    for r in bench["results"]:
        if r["strategy"] in ("lora_separate", "runtime_single", "runtime_mixed3") and r.get("ratio_to_merged"):
            ctx.console.print(f"    {r['strategy']:<16} batch {r['batch_size']:>2}: {r['mean_ms']:.2f} ms, "
                              f"{r['ratio_to_merged']:.3f}× merged")
