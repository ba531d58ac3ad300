"""Where everything of a study lives under its folder: the one place that knows the layout.

```
<study>/config.yaml        the resolved study config;  timings.json  stage and unit times
<study>/sanity/            sanity.json (the sanity checks)
<study>/baselines/         baselines.json (majority and random baselines)
<study>/hpo/<task>-<method>/          one Optuna search per (task, method)
<study>/train/<task>-<method>-s<seed>/ one training run folder (see lorascope.run_folder)
<study>/drift/<task>/      drift.json, layers.csv, reps/
<study>/<stage>/skipped.json  why a per-task analysis (drift, a lens) skipped a task: task -> reason
<study>/weights/<task>/    weights.json (the weight lens)
<study>/forgetting/<task>/ forgetting.json (the forgetting lens; decoder bases)
<study>/probes/<task>/     probes.json (probe retention on the other tasks)
<study>/bench/             bench.json, bench.csv
<study>/report/            report.md, report.html, figures/, summary.json
```

``<task>`` is always the task's name (a task file's ``name:``), never the path of its file. Every
result folder also holds its ``config.yaml`` and ``provenance.json`` (see ``lorascope.artifacts``),
and each analysis (drift, a lens) its ``inputs.json``, the fingerprint of the runs it read;
the study's own ``config.yaml`` and ``timings.json``, ``skipped.json`` files and the HPO searches'
databases are journals, rewritten atomically as the study goes. A study written before sanity
and baselines had folders keeps them as ``<study>/sanity.json`` and ``<study>/baselines.json``,
which are still read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StudyLayout:
    """The paths of a study's files and folders under its folder ``root`` (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def sanity_dir(self) -> Path:
        return self.root / "sanity"

    @property
    def sanity(self) -> Path:
        return _current_or_legacy(self.sanity_dir / "sanity.json", self.root / "sanity.json")

    @property
    def baselines_dir(self) -> Path:
        return self.root / "baselines"

    @property
    def baselines(self) -> Path:
        return _current_or_legacy(self.baselines_dir / "baselines.json", self.root / "baselines.json")

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    def hpo(self, task: str, method: str) -> Path:
        return self.root / "hpo" / f"{task}-{method}"

    @property
    def train(self) -> Path:
        return self.root / "train"

    def run(self, name: str) -> Path:
        return self.train / name

    def drift(self, task: str) -> Path:
        return self.root / "drift" / task

    @property
    def drift_results(self) -> list[Path]:
        """Every task's ``drift.json``, sorted."""
        return sorted((self.root / "drift").glob("*/drift.json"))

    @property
    def drift_skipped(self) -> Path:
        return self.skipped("drift")

    def skipped(self, stage: str) -> Path:
        """Why ``stage`` (drift, weights, forgetting, probes) skipped a task: ``{task: reason}``."""
        return self.root / stage / "skipped.json"

    def weights(self, task: str) -> Path:
        return self.root / "weights" / task

    @property
    def weights_results(self) -> list[Path]:
        """Every task's ``weights.json``, sorted."""
        return sorted((self.root / "weights").glob("*/weights.json"))

    def forgetting(self, task: str) -> Path:
        return self.root / "forgetting" / task

    @property
    def forgetting_results(self) -> list[Path]:
        """Every task's ``forgetting.json``, sorted."""
        return sorted((self.root / "forgetting").glob("*/forgetting.json"))

    def probes(self, task: str) -> Path:
        return self.root / "probes" / task

    @property
    def probes_results(self) -> list[Path]:
        """Every task's ``probes.json``, sorted."""
        return sorted((self.root / "probes").glob("*/probes.json"))

    @property
    def bench(self) -> Path:
        return self.root / "bench"

    @property
    def bench_json(self) -> Path:
        return self.bench / "bench.json"

    @property
    def report(self) -> Path:
        return self.root / "report"


def _current_or_legacy(current: Path, legacy: Path) -> Path:
    """``current``, unless only an older study's ``legacy`` file exists."""
    return legacy if legacy.is_file() and not current.is_file() else current
