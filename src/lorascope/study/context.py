"""What every stage of a study is given: the study's config, its folder, where to print, and the slice to run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from lorascope.study.config import StudyConfig
from lorascope.study.executor import ExecutorSettings, LocalExecutor, RayExecutor


@dataclasses.dataclass
class StageContext:
    """One invocation of a stage.

    Attributes:
        cfg: the study.
        out: the study folder.
        console: where progress lines go.
        only: the slice to run (``{"task": "sst2"}``), empty for everything.
        executor: where the units run (this process, or Ray).
    """

    cfg: StudyConfig
    out: Path
    console: Console
    only: dict[str, str]
    executor: LocalExecutor | RayExecutor = dataclasses.field(default_factory=lambda: LocalExecutor(ExecutorSettings()))
