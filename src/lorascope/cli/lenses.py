"""CLI commands of the lenses besides representations: ``weights``, ``forgetting`` and ``probes``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from lorascope.cli.common import (
    assemble,
    comma_list,
    command_class,
    config_option,
    console,
    quiet_libraries,
    settings_argument,
    user_errors,
)

if TYPE_CHECKING:  # at run time imported where used: `lorascope --help` loads no heavy library
    from lorascope.lenses.records import ForgettingRecord, LensComparison, ProbesRecord, WeightsRecord
    from lorascope.records import StoredTest
    from lorascope.report.learning import Learning


@user_errors
def weights(
    base: str = typer.Option(..., "--model", "--base", help="Base model the runs were trained from."),
    runs: Path = typer.Option(..., help="Folder whose sub-folders are training runs of one task."),
    out: Path = typer.Option(..., help="Output folder (weights.json)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    config: Optional[Path] = config_option(),
    overrides: Optional[list[str]] = settings_argument("epsilon=0.3 top_k=20"),
) -> None:
    """Weight lens: relative update, effective rank and intruder dimensions of every matrix LoRA adapted, per run.

    Example:

    lorascope weights --model minilm --runs runs/quickstart/train --out runs/weights-sst2 epsilon=0.5
    """
    quiet_libraries()
    from lorascope.lenses import WeightLensConfig, run_weight_lens

    cfg = assemble(WeightLensConfig, config, dict(base=base, runs=str(runs)), overrides)
    result = run_weight_lens(cfg, out, overwrite=overwrite)
    print_weight_summary(result, _learning(runs, result))
    console.print(f"-> {out / 'weights.json'}")


@user_errors
def forgetting(
    base: str = typer.Option(..., "--model", "--base",
                             help="Base model the runs were trained from (a decoder with a language-model head)."),
    runs: Path = typer.Option(..., help="Folder whose sub-folders are training runs."),
    out: Path = typer.Option(..., help="Output folder (forgetting.json)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    config: Optional[Path] = config_option(),
    overrides: Optional[list[str]] = settings_argument("n_texts=500 text_file=wiki.txt"),
) -> None:
    """Forgetting: next-token loss of held-out text under the base's LM head, base vs every run.

    Example:

    lorascope forgetting --model smollm2 --runs runs/smollm2-sst2/train --out runs/forgetting-sst2 n_texts=200
    """
    quiet_libraries()
    from lorascope.lenses import ForgettingConfig, run_forgetting

    cfg = assemble(ForgettingConfig, config, dict(base=base, runs=str(runs)), overrides)
    result = run_forgetting(cfg, out, overwrite=overwrite)
    table = Table(title=f"held-out loss on {result.n_texts} passages of {result.text_source} "
                        f"(base {result.base_loss:.4f} nats/token)")
    for col in ("run", "loss", "perplexity", "forgetting (nats/token)"):
        table.add_column(col)
    for r in result.runs:
        s = r.summary
        table.add_row(r.run, f"{s['loss']:.4f}", f"{s['perplexity']:.2f}", f"{s['forgetting']:+.4f}")
    console.print(table)
    # A known-change control passes when it measures what was computed apart from the lens: print the gap.
    gaps = ((c.name, c.measured()) for c in result.controls)
    console.print("controls (measured − expected): " + ", ".join(
        f"{name} {m['forgetting'] - m.get('expected', 0.0):+.1e} pass" for name, m in gaps))
    _print_tests(result.comparison, _learning(runs, result))
    console.print(f"-> {out / 'forgetting.json'}")


@user_errors
def probes(
    base: str = typer.Option(..., "--model", "--base", help="Base model the runs were trained from."),
    runs: Path = typer.Option(..., help="Folder whose sub-folders are training runs."),
    probe_tasks: list[str] = typer.Option(..., "--probe-task", callback=comma_list,
                                          help="A task to probe; repeat, or separate with commas."),
    out: Path = typer.Option(..., help="Output folder (probes.json)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    config: Optional[Path] = config_option(),
    overrides: Optional[list[str]] = settings_argument("n_train=1000 c=0.1"),
) -> None:
    """Probe retention: linear-probe accuracy on other tasks of each run's representations, against the base's.

    Example:

    lorascope probes --model minilm --runs runs/quickstart/train --probe-task mrpc,rte --out runs/probes
    """
    quiet_libraries()
    from lorascope.lenses import ProbeConfig, run_probe_retention
    from lorascope.metrics import format_metric, format_metric_difference

    cfg = assemble(ProbeConfig, config, dict(base=base, runs=str(runs), probe_tasks=probe_tasks), overrides)
    result = run_probe_retention(cfg, out, overwrite=overwrite)
    acc = "accuracy"  # a probe is scored by accuracy, whatever the probed task's own metric
    table = Table(title="probe accuracy on " + ", ".join(
        f"{t} (base {format_metric(acc, result.base[t])}, majority {format_metric(acc, result.majority[t])})"
        for t in result.probe_tasks))
    table.add_column("run")
    for t in result.probe_tasks:
        table.add_column(f"{t} accuracy")
        table.add_column(f"{t} retention")
    for r in result.runs:
        s = r.summary
        cells = [v for t in result.probe_tasks
                 for v in (format_metric(acc, s[f"accuracy_{t}"]), format_metric_difference(acc, s[f"retention_{t}"]))]
        table.add_row(r.run, *cells)
    console.print(table)
    if result.uninformative:
        console.print(f"[yellow]note:[/] the base's probe does not beat the majority label on "
                      f"{', '.join(result.uninformative)}: retention there says nothing")
    # Retention is a difference of probe accuracies: in points, as in the table.
    _print_tests(result.comparison, _learning(runs, result), fmt=lambda v: format_metric_difference(acc, v))
    console.print(f"-> {out / 'probes.json'}")


def _learning(runs: Path, result: WeightsRecord | ForgettingRecord | ProbesRecord) -> Learning:
    """Whether the runs a lens compared learned their task (read from their own metrics.json)."""
    from lorascope.report.learning import comparison_learning

    compared = [(r.run, r.method, r.seed) for r in result.runs]
    return comparison_learning(runs, compared, result.comparison.primary)


def print_weight_summary(result: WeightsRecord, learning: Learning | None = None) -> None:
    """Print the weight lens's per-run table (relative update, ranks of ΔW, intruders) and its full − LoRA tests."""
    cfg = result.config
    table = Table(title=f"weight lens over {len(result.matrices)} matrices per run "
                        f"(intruders: top {cfg['top_k']} singular vectors, ε = {cfg['epsilon']:g})")
    for col in ("run", "relative update ‖ΔW‖/‖W₀‖", "stable rank ΔW", "entropy rank ΔW", "intruders"):
        table.add_column(col)
    for r in result.runs:
        s = r.summary
        table.add_row(r.run, f"{s.relative_update:.4g}", f"{s.stable_rank:.2f}", f"{s.entropy_rank:.2f}",
                      str(s.intruders))
    console.print(table)
    _print_tests(result.comparison, learning)


def _print_tests(comparison: LensComparison, learning: Learning | None = None,
                 fmt: Callable[[float], str] | None = None) -> None:
    """Each measure's means per method and the full − LoRA tests over seed pairs; where the models did
    not learn, the caveat first and every test marked; with fewer than 2 pairs, why there is no test.
    ``fmt`` writes a mean (default: 4 significant digits)."""
    from lorascope.cli.analysis import one_pair_text, print_not_learned

    learned = learning is None or learning.learned
    if not learned and learning is not None:  # learning is None: learned
        print_not_learned(learning)
    elif learning and learning.weak_runs:  # single seeds at majority level; the comparison still stands
        console.print(f"[yellow]note:[/] at majority level: {'; '.join(learning.weak_runs)}", highlight=False)
    mark = "" if learned else " (not interpretable)"
    pairs = len(comparison.seeds)
    for measure, m in comparison.measures.items():
        if m.lora_mean is None or m.full_mean is None:
            continue  # one method has no runs: nothing to compare
        show = fmt or (lambda v: f"{v:.4g}")
        means = f"  {measure}: LoRA {show(m.lora_mean)}, full {show(m.full_mean)}"
        if m.paired_t is None or m.sign_flip is None:  # computed only from 2 seed pairs on
            console.print(f"{means}{mark}", highlight=False)
            continue
        t, e = m.paired_t, m.sign_flip
        console.print(f"{means}; full − LoRA over {t.n} seed pairs: paired t-test p = {_p(t)}, exact sign-flip "
                      f"p = {_p(e)} (two-sided){mark}", highlight=False)
    if pairs == 0:
        console.print("  no seed has both a LoRA and a full fine-tuning run: nothing to compare", highlight=False)
    elif pairs == 1:
        console.print(f"  {one_pair_text(pairs)}", highlight=False)


def _p(test: StoredTest) -> str:
    """The p-value, or why there is none (e.g. every difference is 0)."""
    return f"{test.p_value:.4g}" if test.p_value is not None else f"undefined ({test.note or 'no variation'})"


def register(app: typer.Typer) -> None:
    """Add ``weights``, ``forgetting`` and ``probes`` to ``app``, each with the options of its config's settings."""
    from lorascope.lenses.config import ForgettingConfig, ProbeConfig, WeightLensConfig

    app.command(cls=command_class(WeightLensConfig))(weights)
    app.command(cls=command_class(ForgettingConfig))(forgetting)
    app.command(cls=command_class(ProbeConfig))(probes)
