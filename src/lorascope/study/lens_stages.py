"""The study stages of the lenses besides representations: ``weights``, ``forgetting`` and ``probes``.

Each runs its lens once per task over the study's training runs of that task, into the task's
folder of the study layout; a task the lens cannot measure (no LoRA run, an encoder base without
a language-model head, no other task to probe) is skipped with the reason, recorded in the lens's
``skipped.json`` for the report, and the study goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lorascope.errors import ConfigError, DataError
from lorascope.study.context import StageContext
from lorascope.study.layout import StudyLayout
from lorascope.study.units import analysis_unit, note_skipped

if TYPE_CHECKING:
    from lorascope.lenses.records import ForgettingRecord, LensComparison, ProbesRecord, WeightsRecord

Result = TypeVar("Result")


def _each_task(ctx: StageContext, stage: str, make_cfg: Callable[[str], Any], run: Callable[[Any, Path], Result],
               out: Callable[[str], Path], describe: Callable[[Result], str]) -> None:
    skipped = StudyLayout(ctx.out).skipped(stage)

    def skip(task: str, why: str) -> None:
        ctx.console.print(f"  {stage} {task}: [yellow]skipped[/] — {why}")
        note_skipped(skipped, task, why)

    tasks, args = [], []
    for task in [t for t in ctx.cfg.tasks if ctx.only.get("task", t) == t]:
        try:
            cfg = make_cfg(task)
        except DataError as exc:
            skip(task, str(exc))
            continue
        tasks.append(task)
        args.append((run, cfg, out(task)))
    for done in ctx.executor.map(analysis_unit, args):
        task, (result, skipped_because) = tasks[done.index], done.result
        if result is None:
            skip(task, str(skipped_because))
        else:
            note_skipped(skipped, task, None)
            ctx.console.print(f"  {stage} {task}: {describe(result)} ({done.seconds:.0f} s)")


def compared_pair(ctx: StageContext, task: str) -> dict[str, Any]:
    """``{"pair": [LoRA label, full label]}`` when the study sweeps (the points its rule chose), else {}.

    Raises:
        DataError: a swept method without a finished run, so nothing to compare.
    """
    from lorascope.study.sweep_drift import drift_pair_settings

    try:
        pair = drift_pair_settings(ctx.cfg, task, ctx.out).get("pair")
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    return {"pair": pair} if pair else {}


def _means(comparison: LensComparison, measure: str, spec: str = ".4g",
           fmt: Callable[[float], str] | None = None) -> str:
    """"lora x, lora_r64 y, full z": one measure's mean per method (methods without runs left out;
    full fine-tuning as measured for the primary comparison), each written with ``spec`` or by ``fmt``."""
    variants = comparison.variants or {comparison.primary: comparison}
    means = [(label, v.measures[measure].lora_mean) for label, v in variants.items()]
    means.append((comparison.reference, comparison.measures[measure].full_mean))
    return ", ".join(f"{label} {fmt(mean) if fmt else format(mean, spec)}" for label, mean in means if mean is not None)


def stage_weights(ctx: StageContext) -> None:
    """Run the weight lens on each task's trained runs and print its per-method means."""
    from lorascope.lenses import WeightLensConfig, run_weight_lens

    layout = StudyLayout(ctx.out)

    def describe(result: WeightsRecord) -> str:
        from lorascope.weight_update.scope import short_types

        c = result.comparison
        on = "/".join(short_types(result.matrices_by_variant[c.primary]))
        return (f"relative update on {on}: {_means(c, 'relative_update')}; whole model: "
                f"{_means(c, 'relative_update_whole')}; intruders on {on}: {_means(c, 'intruders', spec='.3g')} "
                f"(at a matched size: {_means(c, 'intruders_matched', spec='.3g')})")

    _each_task(ctx, "weights",
               lambda task: WeightLensConfig(**ctx.cfg.weights.model_dump(), base=ctx.cfg.model, runs=str(layout.train),
                                             task=task, device=ctx.cfg.device, **compared_pair(ctx, task)),
               run_weight_lens, layout.weights, describe)


def stage_forgetting(ctx: StageContext) -> None:
    """Run the forgetting lens on each task's trained runs and print the per-method loss increase over the base."""
    from lorascope.lenses import ForgettingConfig, run_forgetting

    layout = StudyLayout(ctx.out)

    def describe(result: ForgettingRecord) -> str:
        shown = _means(result.comparison, "forgetting", spec="+.4f")
        return f"{shown} nats/token over base loss {result.base_loss:.4f}"

    _each_task(ctx, "forgetting",
               lambda task: ForgettingConfig(**ctx.cfg.forgetting.model_dump(), base=ctx.cfg.model,
                                             runs=str(layout.train), task=task, data_dir=ctx.cfg.data_dir,
                                             device=ctx.cfg.device, **compared_pair(ctx, task)),
               run_forgetting, layout.forgetting, describe)


def stage_probes(ctx: StageContext) -> None:
    """Run probe retention on each task's trained runs, probed on the other tasks, and print the per-method retention."""
    from lorascope.data.tasks import get_task
    from lorascope.lenses import ProbeConfig, run_probe_retention
    from lorascope.metrics import format_metric_difference

    layout = StudyLayout(ctx.out)

    def make_cfg(task: str) -> ProbeConfig:
        # Each task's runs are probed on the other tasks: the configured ones, or else the study's; a
        # task is told apart by its name, and read from its file.
        refs = [ctx.cfg.task_ref(t) for t in (ctx.cfg.probes.probe_tasks or ctx.cfg.tasks)]
        others = [ref for ref in refs if get_task(ref).name != task]
        if not others:
            raise DataError("no other task to probe (set probes.probe_tasks)")
        settings = {**ctx.cfg.probes.model_dump(), "probe_tasks": others}
        return ProbeConfig(**settings, base=ctx.cfg.model, runs=str(layout.train), task=task, data_dir=ctx.cfg.data_dir,
                           device=ctx.cfg.device, **compared_pair(ctx, task))

    def describe(result: ProbesRecord) -> str:
        # Retention is a difference of probe accuracies: "+1.2 points" for each method.
        shown = _means(result.comparison, "retention", fmt=lambda v: format_metric_difference("accuracy", v))
        return f"retention on {', '.join(result.probe_tasks)}: {shown}"

    _each_task(ctx, "probes", make_cfg, run_probe_retention, layout.probes, describe)
