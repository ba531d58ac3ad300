"""The study's serving benchmark: the trained LoRA adapters of the first seed, one per task."""

from __future__ import annotations

from lorascope.study.stages import StageContext


def run_bench_stage(ctx: StageContext) -> None:
    ctx.console.print("  bench: the serving benchmark stage is not part of this build yet; skipped")
