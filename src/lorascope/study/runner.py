"""``run_study``: every stage of a study in order, resumable, with wall time per stage."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from lorascope.artifacts import read_json, stored_config, write_json
from lorascope.config import config_to_dict, diff_configs, dump_yaml
from lorascope.errors import ConfigError
from lorascope.study.config import StudyConfig
from lorascope.study.stages import STAGE_FUNCS, StageContext

# Keys that choose what to run now, not what the results are: changing them never invalidates.
_NON_RESULT_KEYS = ("stages", "name")


def check_study_config(out: Path, cfg: StudyConfig) -> None:
    """A study folder belongs to one configuration; a different one is an error naming the keys."""
    full = {k: v for k, v in config_to_dict(cfg).items() if k != "stages"}
    current = {k: v for k, v in full.items() if k not in _NON_RESULT_KEYS}
    stored = stored_config(out)
    if stored is None:
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(full, out / "config.yaml")
        return
    stored = {k: v for k, v in stored.items() if k not in _NON_RESULT_KEYS}
    diffs = diff_configs(stored, current)
    if diffs:
        raise ConfigError(f"{out}: holds a study with a different configuration ({'; '.join(diffs[:4])}); "
                          "use another 'out' folder or remove this one")


def run_study(cfg: StudyConfig, *, only: dict[str, str] | None = None, console: Console | None = None) -> Path:
    """Run ``cfg.stages``; returns the study folder."""
    console = console or Console()
    out = Path(cfg.out)
    check_study_config(out, cfg)
    timings_path = out / "timings.json"
    timings = read_json(timings_path) if timings_path.is_file() else {}
    ctx = StageContext(cfg=cfg, out=out, console=console, only=only or {})
    for i, stage in enumerate(cfg.stages, 1):
        console.rule(f"[bold]stage {i}/{len(cfg.stages)}: {stage}")
        t0 = time.perf_counter()
        STAGE_FUNCS[stage](ctx)
        timings[stage] = round(time.perf_counter() - t0, 2)
        write_json(timings_path, timings)
    return out
