"""A training run folder and its record: the one place that knows their layout and reads ``metrics.json``.

``lorascope train`` writes ``<run>/metrics.json`` (the :class:`RunRecord`), ``config.yaml``,
``provenance.json`` and either ``adapter/`` (LoRA: a PEFT adapter folder with the trained head)
or ``model/`` (full fine-tuning: a ``from_pretrained`` model folder). A folder holding
``metrics.json`` is a finished run; ``status`` says whether it succeeded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from lorascope.artifacts import NOT_RESULT_SUFFIXES
from lorascope.config import describe_validation_error
from lorascope.errors import ConfigError

METRICS_FILE = "metrics.json"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"


class RunRecord(BaseModel):
    """What ``metrics.json`` holds (the keys every reader relies on; the rest are kept as written).

    Attributes:
        status: ``ok``, or ``failed`` with the ``reason`` (diverged, crashed).
        task: the task's name; ``task_spec`` is the whole task (see ``lorascope.data.tasks.task_record``).
        method: ``lora`` or ``full``; ``variant``: the study's name for the run's settings (e.g.
            ``lora_r64``), None for a plain ``lora`` or ``full`` run; ``label`` is the one of the two a
            study groups runs by.
        dev: dev metrics of the restored best checkpoint (fractions) and ``loss``.
        dev_per_label: label name -> precision, recall, f1 (fractions) and support on dev.
        parameters: ``trainable`` and ``total`` parameter counts.
        learning_check: whether the run learned its task (see ``lorascope.train.learned``).
        selection: what chose the restored checkpoint: ``split`` (``dev``, or ``selection_split``:
            training examples held out, ``n`` of them, ``fraction`` drawn with ``seed``), ``by``
            (``loss`` or ``metric``), ``metric`` (the evaluation key compared) and its ``best_value``;
            ``eval_curve`` holds the evaluations on that split. Older runs have none (dev, loss).
        leak_check: whether the main metric was near-perfect from the first evaluation on.
        warnings: lines printed when the run ended (a restored checkpoint that predicts one label
            while another one learned, a suspected leak); empty, or absent in older runs, when none.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    status: Literal["ok", "failed"] = "failed"  # a record without a status is not a success
    reason: str | None = None
    task: str | None = None
    method: Literal["lora", "full"] | None = None
    variant: str | None = None
    model: str | None = None
    seed: int | None = None
    main_metric: str | None = None
    dev: dict[str, float] | None = None
    dev_per_label: dict[str, dict[str, float]] | None = None
    n_train: int | None = None
    n_eval: int | None = None
    best_epoch: float | None = None
    runtime_s: float | None = None
    parameters: dict[str, Any] | None = None
    label_names: list[str] | None = None
    base_model_source: str | None = None
    learning_check: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    leak_check: dict[str, Any] | None = None
    warnings: list[str] | None = None
    task_spec: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        """The method as the study names it: the variant, else ``lora`` or ``full``."""
        return self.variant or str(self.method)

    @property
    def main_value(self) -> float | None:
        """The dev value of the main metric, None when the run has none."""
        return (self.dev or {}).get(self.main_metric or "")

    @property
    def learned(self) -> bool:
        """False only when the learning check says so (older runs have none)."""
        return bool((self.learning_check or {}).get("learned", True))


@dataclass(frozen=True)
class RunFolder:
    """A training run folder: where its parts are, and its record."""

    path: Path

    @staticmethod
    def holds_run(path: str | Path) -> bool:
        """Whether ``path`` is a finished run folder (it holds ``metrics.json``)."""
        return (Path(path) / METRICS_FILE).is_file()

    @staticmethod
    def finished_under(root: str | Path) -> list[RunFolder]:
        """Every finished run folder directly under ``root``, sorted (work in progress and replaced ones excluded)."""
        return [RunFolder(p.parent) for p in sorted(Path(root).glob(f"*/{METRICS_FILE}"))
                if not p.parent.name.endswith(NOT_RESULT_SUFFIXES)]

    @staticmethod
    def fingerprint_under(root: str | Path) -> dict[str, str]:
        """``{run folder name: hash}`` of every finished run under ``root``: what an analysis of them
        reads. The hash covers each file's path, size and modification time, so a run retrained,
        replaced or edited gets another one (a copied folder too: its analyses are redone, never
        served stale).
        """
        prints = {}
        for run in RunFolder.finished_under(root):
            digest = hashlib.sha256()
            for path in sorted(p for p in run.path.rglob("*") if p.is_file()):
                stat = path.stat()
                digest.update(f"{path.relative_to(run.path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            prints[run.name] = digest.hexdigest()[:16]
        return prints

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def name(self) -> str:
        return self.path.name

    def raw(self) -> dict[str, Any]:
        """``metrics.json`` as written.

        Raises:
            ConfigError: missing, unreadable or not a JSON object, naming the file.
        """
        try:
            data = json.loads(self.metrics_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: not a finished training run (no {METRICS_FILE})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.metrics_path}: unreadable ({exc.__class__.__name__}: {exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.metrics_path}: expected a JSON object")
        return data

    def record(self) -> RunRecord:
        """The validated record.

        Raises:
            ConfigError: as :meth:`raw`, or a key of the wrong type, naming the file and key.
        """
        try:
            return RunRecord.model_validate(self.raw())
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, str(self.metrics_path))) from None

    def successful_record(self) -> RunRecord:
        """The record of a run that finished successfully.

        Raises:
            ConfigError: as :meth:`record`, or the run failed (with its reason).
        """
        record = self.record()
        if not record.ok:
            raise ConfigError(f"{self.path}: training run did not finish successfully ({record.reason})")
        return record

    def method_settings(self) -> dict[str, Any]:
        """The settings that make the run's method variant: ``method``, ``variant`` and, for LoRA,
        ``lora_r``, ``lora_alpha``, ``lora_targets``, ``lora_rslora``, ``lora_dora`` (from ``config.yaml``)."""
        from lorascope.artifacts import stored_config

        stored = stored_config(self.path) or {}
        out: dict[str, Any] = {"method": stored.get("method"), "variant": stored.get("variant")}
        if out["method"] == "lora":
            out.update({k: stored.get(k) for k in ("lora_r", "lora_alpha", "lora_targets")})
            out.update(lora_rslora=bool(stored.get("lora_rslora")), lora_dora=bool(stored.get("lora_dora")))
        return out
