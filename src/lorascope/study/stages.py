"""The stages of a study. Each reads the study config, writes its artifacts atomically, and is
safe to rerun: finished units are skipped, so a killed study resumes where it stopped."""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from lorascope.artifacts import amend, commit, commit_failure
from lorascope.drift.record import DriftComparison, DriftRecord, NoVerdict, StoredVerdict
from lorascope.errors import ConfigError, LorascopeError
from lorascope.metrics import format_metric
from lorascope.records import Baseline, BaselinesRecord, SanityCheck, SanityRecord
from lorascope.run_folder import METRICS_FILE, RunFolder, RunRecord
from lorascope.study.bench_stage import run_bench_stage
from lorascope.study.context import StageContext
from lorascope.study.layout import StudyLayout
from lorascope.study.lens_stages import stage_forgetting, stage_probes, stage_weights
from lorascope.study.units import TrainUnit, analysis_unit, note_skipped, train_units
from lorascope.train.config import TrainConfig


def _eta(done: int, total: int, elapsed: float) -> str:
    if done == 0:
        return "ETA –"
    left = elapsed / done * (total - done)
    return f"ETA {left / 60:.1f} min" if left >= 60 else f"ETA {left:.0f} s"


def stage_sanity(ctx: StageContext) -> None:
    """Run the sanity check of every (task, method) and record them, unless an earlier invocation did."""
    from lorascope.checks.sanity import run_sanity_one

    layout = StudyLayout(ctx.out)
    if layout.sanity.is_file():
        ctx.console.print("  sanity: done earlier")
        return
    s = ctx.cfg.sanity
    units = [(task, method) for task in ctx.cfg.tasks for method in ctx.cfg.methods]
    args = [(ctx.cfg.train_config(task, method, ctx.cfg.seeds[0]), s.samples, s.max_epochs, s.threshold, False)
            for task, method in units]
    rows: list[SanityCheck | None] = [None] * len(units)
    for done in ctx.executor.map(run_sanity_one, args):
        (task, method), r = units[done.index], done.result
        rows[done.index] = r
        mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        ctx.console.print(f"  sanity {task} {method}: loss {r.final_loss:.4f} after {r.epochs_run} epochs {mark}")
    with commit(layout.sanity_dir, {"sanity": s.model_dump(), "units": [list(u) for u in units]}) as partial:
        # In grid order, whichever unit finished first.
        SanityRecord.create(settings=s.model_dump(mode="json"), results=[r for r in rows if r is not None]).write(partial)


def stage_baselines(ctx: StageContext) -> None:
    """Score each task's baselines on the runs' dev subset (once, unless recorded) and print the majority baselines."""
    from lorascope.checks.baselines import run_baselines

    layout = StudyLayout(ctx.out)
    if not layout.baselines.is_file():
        # Scored on the dev subset the runs are evaluated on (that of the first method and seed).
        results = []
        for task in ctx.cfg.tasks:
            unit = ctx.cfg.train_config(task, ctx.cfg.methods[0], ctx.cfg.seeds[0])
            ref = ctx.cfg.task_ref(task)
            results += run_baselines([ref], ctx.cfg.data_dir, eval_limits={ref: unit.eval_limit}, data_seed=unit.data_seed)
        with commit(layout.baselines_dir, {"tasks": list(ctx.cfg.tasks)}) as partial:
            BaselinesRecord.create(baselines=results).write(partial)
    for b in BaselinesRecord.read(layout.baselines).baselines:
        ctx.console.print(baseline_line(b), highlight=False)


def baseline_line(baseline: Baseline) -> str:
    """The console line of one task's majority baseline, each metric on its own scale."""
    return f"  baseline {baseline.task}: majority " + ", ".join(
        f"{k} {format_metric(k, v)}" for k, v in baseline.majority.items())


def stage_hpo(ctx: StageContext) -> None:
    """Run the hyperparameter search of every (task, method) that ``ctx.only`` allows, and print each best trial."""
    from lorascope.hpo import run_hpo
    from lorascope.study.config import hpo_config

    units = [(task, method) for task in ctx.cfg.tasks for method in ctx.cfg.methods
             if all(ctx.only.get(k, v) == v for k, v in (("task", task), ("method", method)))]
    args = [(hpo_config(ctx.cfg, task, method), StudyLayout(ctx.out).hpo(task, method)) for task, method in units]
    for done in ctx.executor.map(run_hpo, args):
        (task, method), record = units[done.index], done.result
        best, metric = record.best, record.main_metric
        ctx.console.print(f"  hpo {task} {method}: best dev {metric} {format_metric(metric, best.value if best else None)} "
                          f"with {escape(str(best.params if best else None))} ({done.seconds:.0f} s)", highlight=False)


def tuned_settings(out: Path, task: str, method: str) -> dict[str, Any]:
    """The searched parameters of the best HPO trial of (task, method), or {} without a search."""
    from lorascope.hpo.record import HpoRecord

    path = StudyLayout(out).hpo(task, method) / HpoRecord.FILE
    if not path.is_file():
        return {}
    best = HpoRecord.read(path).best
    return dict(best.params) if best else {}


def train_unit(cfg: TrainConfig, folder: Path) -> RunRecord | None:
    """One training unit, on whichever executor runs it: its record (a crash recorded as a failed run)."""
    from lorascope.train import run_train

    _forget_crash(folder)
    try:
        return run_train(cfg, folder, progress=False)
    except LorascopeError:
        raise  # bad input (data, config) is the user's to fix: stop with its one-line error
    except Exception as exc:  # out of memory, a library error: record the gap, keep going
        return _record_failure(folder, cfg, exc)


def stage_train(ctx: StageContext) -> None:
    """Train every unit of the grid, repeating while the sweep selection adds units."""
    seen: set[str] = set()
    # With sweep_seeds, finishing the sweep's runs lets the selection rule add the chosen points' other
    # seeds: train until the grid stops growing.
    while units := [u for u in train_units(ctx.cfg, ctx.only, ctx.out) if u.name not in seen]:
        if seen:
            ctx.console.print(f"  selection made: {len(units)} more units for the chosen sweep points")
        seen.update(u.name for u in units)
        _train_batch(ctx, units, time.perf_counter())


def _train_batch(ctx: StageContext, units: list[TrainUnit], started: float) -> None:
    folders = [unit.folder(ctx.out) for unit in units]
    # A folder that holds a finished record was done by an earlier invocation (a crash is redone).
    done_before = [RunFolder.holds_run(f) and "traceback" not in RunFolder(f).raw() for f in folders]
    args = [(ctx.cfg.train_config(u.task, u.method, u.seed, tuned_settings(ctx.out, u.task, u.method)), f)
            for u, f in zip(units, folders)]
    fresh = finished = 0
    for done in ctx.executor.map(train_unit, args):
        unit, m = units[done.index], done.result
        was_done = done_before[done.index]
        finished += 1
        fresh += 0 if was_done else 1
        what = unit_result(m)
        elapsed = time.perf_counter() - started
        timing = "done earlier" if was_done else f"{done.seconds:.0f} s"
        where = f" on {done.worker}" if ctx.executor.kind != "local" and not was_done else ""
        left = sum(1 for i, d in enumerate(done_before) if not d) - fresh
        ctx.console.print(f"  [{finished}/{len(units)}] {unit.name}: {what} ({timing}{where}, "
                          f"{_eta(fresh, fresh + left, elapsed)})")


def unit_result(m: RunRecord | None) -> str:
    """What the console line of a finished training unit says (rich markup): its dev main metric on its
    own scale, why it did not learn, the warnings its run recorded; or why it failed."""
    if m is None or not m.ok:
        return f"[red]failed[/]: {escape(m.reason or '') if m is not None else 'no record'}"
    what = f"dev {m.main_metric} {format_metric(m.main_metric, m.main_value)}"
    check = m.learning_check or {}
    if not check.get("learned", True):
        what += f" [yellow](did not learn: {escape('; '.join(check.get('reasons') or []))})[/]"
    for warning in m.warnings or []:
        what += f" [yellow](warning: {escape(warning)})[/]"
    return what


def _forget_crash(folder: Path) -> None:
    """Delete a unit recorded as crashed (it has a traceback), so that a rerun tries it again.

    A crash (out of memory, a killed worker, a library error) may not recur; a diverged run
    (``status: failed`` without a traceback) is deterministic and stays recorded.
    """
    if RunFolder.holds_run(folder) and "traceback" in RunFolder(folder).raw():
        shutil.rmtree(folder)


def _record_failure(folder: Path, cfg: TrainConfig, exc: Exception) -> RunRecord:
    """A crashed unit becomes a finished folder with ``status: failed``, the reason and the traceback,
    committed through :func:`lorascope.artifacts.commit_failure`: the run's ``.partial`` folder stays
    where it is, so the retry on the next invocation resumes from its newest complete checkpoint
    instead of starting over, and no checkpoint file (the Trainer's optimizer state is pickled)
    moves into a result folder. When the disk refuses the record (often the very cause), the
    failure is still reported, from memory, and the next invocation retries the unit.
    """
    from lorascope.config import config_to_dict

    reason = f"{exc.__class__.__name__}: {exc}".strip()
    metrics = {"status": "failed", "reason": reason[:500], "task": cfg.task, "method": cfg.method, "seed": cfg.seed,
               "model": cfg.model, "traceback": traceback.format_exc()[-4000:]}
    commit_failure(folder, config_to_dict(cfg), {METRICS_FILE: metrics})
    return RunRecord.model_validate(metrics)


def stage_drift(ctx: StageContext) -> None:
    """Run the drift analysis of each task, recording why a task was skipped, then correct the study's verdict family and print it."""
    from lorascope.drift import DriftConfig, run_drift
    from lorascope.study.sweep_drift import drift_pair_settings

    layout = StudyLayout(ctx.out)
    tasks, args, unselected = [], [], {}
    for task in (t for t in ctx.cfg.tasks if ctx.only.get("task", t) == t):
        try:
            sweep = drift_pair_settings(ctx.cfg, task, ctx.out)
        except ConfigError as exc:  # a swept method without a finished run: nothing to select, nothing to compare
            unselected[task] = str(exc)
            continue
        tasks.append(task)
        args.append((run_drift, DriftConfig(**ctx.cfg.drift.model_dump(), task=ctx.cfg.task_ref(task), base=ctx.cfg.model,
                                            runs=str(layout.train), n_tasks=len(ctx.cfg.tasks), data_dir=ctx.cfg.data_dir,
                                            device=ctx.cfg.device, **sweep), layout.drift(task)))
    outcomes = [(task, None, why, 0.0) for task, why in unselected.items()]
    outcomes += [(tasks[d.index], *d.result, d.seconds) for d in ctx.executor.map(analysis_unit, args)]
    for task, result, skipped_because, seconds in outcomes:
        if result is None:
            # No finished runs for this task (all failed): the report marks the gap.
            ctx.console.print(f"  drift {task}: [yellow]skipped[/] — {skipped_because}")
            note_skipped(layout.drift_skipped, task, skipped_because)
            continue
        summary = ", ".join(f"{m} {s.drift.mean:.3f}" for m, s in result.methods.items())
        controls = "controls pass" if all(c.passed for c in result.controls) else "[red]a control FAILED[/]"
        ctx.console.print(f"  drift {task}: {summary}; {controls} ({seconds:.0f} s)")
        if result.comparison.not_interpretable:
            ctx.console.print(f"    [yellow]LoRA vs full FT {result.comparison.not_interpretable}[/]")
        frontier = result.frontier
        for part in (frontier.matched, frontier.interaction) if frontier else ():
            if part is not None:
                ctx.console.print(f"    sweep: {part.statement}")
    adjusted = correct_study_family(ctx)
    for task in tasks:
        lines = verdict_lines(adjusted[task].verdicts if task in adjusted else {})
        if lines:
            ctx.console.print(f"  verdicts {task} (one family over the study's tasks and hypotheses):")
            for line in lines:
                ctx.console.print(f"    {line}")


def correct_study_family(ctx: StageContext) -> dict[str, DriftComparison]:
    """One family over every verdict of the study (hypotheses x tasks, Holm unless the study declares
    otherwise): each task's analysis adjusted only its own verdicts; this re-decides them together,
    in each task's ``drift.json``.

    Returns:
        task -> its adjusted comparison, for the tasks that have a ``drift.json``.
    """
    from lorascope.stats.family import correct_study

    layout = StudyLayout(ctx.out)
    saved = {task: DriftRecord.read(layout.drift(task) / DriftRecord.FILE).as_json() for task in ctx.cfg.tasks
             if (layout.drift(task) / DriftRecord.FILE).is_file()}
    adjusted = correct_study({task: d["comparison"] for task, d in saved.items()}, alpha=ctx.cfg.drift.alpha,
                             family=ctx.cfg.drift.family, tasks=ctx.cfg.tasks)
    for task, comparison in adjusted.items():
        if comparison != saved[task]["comparison"]:
            # The primary comparison is also the primary label's entry of ``comparisons``: one record, two keys.
            comparisons = dict(saved[task].get("comparisons") or {})
            primary = saved[task].get("primary")
            if primary in comparisons:
                comparisons[primary] = comparison
            amended = DriftRecord.model_validate({**saved[task], "comparison": comparison, "comparisons": comparisons})
            amend(layout.drift(task), {DriftRecord.FILE: amended.as_json()})
    return {task: DriftComparison.model_validate(comparison) for task, comparison in adjusted.items()}


def verdict_lines(verdicts: dict[str, StoredVerdict | NoVerdict]) -> list[str]:
    """One line per verdict: status by the primary test, the exact test's status, each with the p it rests on."""
    from lorascope.report.answers import deciding_p
    from lorascope.report.verdict_text import robust

    lines = []
    for v in verdicts.values():
        if not isinstance(v, StoredVerdict):
            continue
        flag = "robust to normality" if robust(v) else "tests disagree" if not v.tests_agree else "not decided"
        first_name, second_name = (name.split(" (")[0] for name in (v.test.test, v.secondary.test if v.secondary else "?"))
        lines.append(f"{v.hypothesis}: {v.status} ({first_name} {deciding_p(v)}; {second_name}: "
                     f"{v.secondary_status}, {deciding_p(v, 'secondary')}) — {flag}")
    return lines


def stage_bench(ctx: StageContext) -> None:
    """Run the serving benchmark (see ``run_bench_stage``)."""
    run_bench_stage(ctx)


def stage_report(ctx: StageContext) -> None:
    """Build the study's report and print its path."""
    from lorascope.report import build_report

    path = build_report(ctx.out)
    ctx.console.print(f"  report: {path}")


STAGE_FUNCS: dict[str, Callable[[StageContext], None]] = {
    "sanity": stage_sanity,
    "baselines": stage_baselines,
    "hpo": stage_hpo,
    "train": stage_train,
    "drift": stage_drift,
    "weights": stage_weights,
    "forgetting": stage_forgetting,
    "probes": stage_probes,
    "bench": stage_bench,
    "report": stage_report,
}
