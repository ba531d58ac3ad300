"""CLI commands of the lenses besides representations: ``weights`` and ``forgetting``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lorascope.cli.common import assemble, console, quiet_libraries, user_errors, with_settings_help


@user_errors
def weights(
    base: str = typer.Option(..., help="Base model the runs were trained from."),
    runs: Path = typer.Option(..., help="Folder whose sub-folders are training runs of one task."),
    out: Path = typer.Option(..., help="Output folder (weights.json)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Settings as key=value (e.g. epsilon=0.3).",
                                                   show_default=False),
) -> None:
    """Weight lens: relative update, effective rank and intruder dimensions of every matrix LoRA adapted, per run."""
    quiet_libraries()
    from lorascope.lenses import WeightLensConfig, run_weight_lens

    cfg = assemble(WeightLensConfig, None, dict(base=base, runs=str(runs)), overrides)
    result = run_weight_lens(cfg, out)
    print_weight_summary(result)
    console.print(f"-> {out / 'weights.json'}")


@user_errors
def forgetting(
    base: str = typer.Option(..., help="Base model the runs were trained from (a decoder with a language-model head)."),
    runs: Path = typer.Option(..., help="Folder whose sub-folders are training runs."),
    out: Path = typer.Option(..., help="Output folder (forgetting.json)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Settings as key=value (e.g. n_texts=500 text_file=wiki.txt).",
                                                   show_default=False),
) -> None:
    """Forgetting: next-token loss of held-out text under the base's LM head, base vs every run."""
    quiet_libraries()
    from lorascope.lenses import ForgettingConfig, run_forgetting

    cfg = assemble(ForgettingConfig, None, dict(base=base, runs=str(runs)), overrides)
    result = run_forgetting(cfg, out)
    table = Table(title=f"held-out loss on {result['n_texts']} passages of {result['text_source']} "
                        f"(base {result['base_loss']:.4f} nats/token)")
    for col in ("run", "loss", "perplexity", "forgetting (nats/token)"):
        table.add_column(col)
    for r in result["runs"]:
        s = r["summary"]
        table.add_row(r["run"], f"{s['loss']:.4f}", f"{s['perplexity']:.2f}", f"{s['forgetting']:+.4f}")
    console.print(table)
    console.print("controls: " + ", ".join(f"{c['name']} {c['forgetting']:+.1e} pass" for c in result["controls"]))
    _print_tests(result["comparison"])
    console.print(f"-> {out / 'forgetting.json'}")


def print_weight_summary(result: dict) -> None:
    cfg = result["config"]
    table = Table(title=f"weight lens over {len(result['matrices'])} matrices per run "
                        f"(intruders: top {cfg['top_k']} singular vectors, ε = {cfg['epsilon']:g})")
    for col in ("run", "relative update ‖ΔW‖/‖W₀‖", "stable rank ΔW", "entropy rank ΔW", "intruders"):
        table.add_column(col)
    for r in result["runs"]:
        s = r["summary"]
        table.add_row(r["run"], f"{s['relative_update']:.4g}", f"{s['stable_rank']:.2f}", f"{s['entropy_rank']:.2f}",
                      str(s["intruders"]))
    console.print(table)
    _print_tests(result["comparison"])


def _print_tests(comparison: dict) -> None:
    for measure, m in comparison["measures"].items():
        if "paired_t" not in m:
            continue
        t, e = m["paired_t"], m["sign_flip"]  # present only where both methods have runs
        console.print(f"  {measure}: LoRA {m['lora_mean']:.4g}, full {m['full_mean']:.4g}; full − LoRA over "
                      f"{t['n']} seed pairs: paired t-test p = {_p(t)}, exact sign-flip p = {_p(e)} (two-sided)",
                      highlight=False)


def _p(test: dict) -> str:
    """The p-value, or why there is none (e.g. every difference is 0)."""
    return f"{test['p_value']:.4g}" if test.get("p_value") is not None else f"undefined ({test.get('note') or 'no variation'})"


def register(app: typer.Typer) -> None:
    from lorascope.lenses.config import ForgettingConfig, WeightLensConfig

    app.command()(with_settings_help(weights, WeightLensConfig))
    app.command()(with_settings_help(forgetting, ForgettingConfig))
