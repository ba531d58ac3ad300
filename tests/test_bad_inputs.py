"""Bad input, table-driven: every kind ends with one line on stderr, exit status 2, no traceback,
and nothing left behind.

Each row of ``CASES`` builds its inputs in a fresh folder, runs the real command line in-process
(typer's CliRunner) and checks the contract: exit status 2, exactly one ``error: …`` line on
stderr that matches the row's pattern (which names the file, key or row), no ``Traceback``, and
the folder's contents unchanged (no output folder, no ``.partial``). Every case fails in
validation, before any training: add a row for every new kind of bad input.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorascope.cli.main import app
from tests.conftest import GLUE_DIR, write

TINY = ["--model", "tiny-llama"]
# Keeps a run short should a case wrongly get past validation.
QUICK = ["train_limit=8", "eval_limit=4", "epochs=1", "max_length=16", "batch_size=4"]
GOOD_TRAIN = "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(8))
GOOD_DEV = "text,label\n" + "".join(f"nice {i},pos\nawful {i},neg\n" for i in range(3))
TASK_YAML = "name: toy\nfiles: {train: train.csv, validation: dev.csv}\ntext_columns: [text]\nlabel_column: label\nlabels: [neg, pos]\n"
RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
STUDY_BASE = "model: tiny-llama\ntasks: [rte]\nmethods: [lora]\nseeds: [1]\nstages: [baselines]\n"


# --------------------------------------------------------------------------------------------
# Shared inputs that take a model to build: made once per module, copied into each case.


@dataclass
class Assets:
    tiny_llama: Path  # the cached tiny-llama model folder
    adapter: Path  # a PEFT LoRA adapter folder on tiny-llama (2 labels)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    from lorascope.models import load_classifier, prepare_for_method

    root = tmp_path_factory.mktemp("assets")
    loaded = load_classifier("tiny-llama", ("negative", "positive"), seed=0)
    model, _ = prepare_for_method(loaded.model, "lora")
    model.save_pretrained(root / "adapter")
    return Assets(tiny_llama=Path(loaded.source), adapter=root / "adapter")


@dataclass
class Ws:
    """One case's workspace: writes inputs under ``root`` and names paths in it."""

    root: Path
    assets: Assets
    env: dict[str, str | None] = field(default_factory=dict)

    def p(self, *parts: str) -> str:
        return str(self.root.joinpath(*parts))

    def task(self, yaml: str = TASK_YAML, train: str | None = GOOD_TRAIN, dev: str | None = GOOD_DEV,
             train_name: str = "train.csv", encoding: str = "utf-8", train_encoding: str = "utf-8") -> str:
        """A user task: ``task.yaml`` plus its data files (None: file not written)."""
        if train is not None:
            write(self.root / train_name, train, train_encoding)
        if dev is not None:
            write(self.root / "dev.csv", dev)
        return str(write(self.root / "task.yaml", yaml, encoding))

    def dir(self, *parts: str) -> str:
        """An (empty) folder where a file is expected."""
        self.root.joinpath(*parts).mkdir(parents=True)
        return self.p(*parts)

    def file(self, name: str, text: str, encoding: str = "utf-8") -> str:
        return str(write(self.root / name, text, encoding))

    def train(self, task: str, *extra: str) -> list[str]:
        """``lorascope train`` on tiny-llama into ``out``; ``extra`` (options, overrides) comes last."""
        return ["train", "--task", task, *TINY, "--out", self.p("out"), *QUICK, *extra]

    def train_rte(self, train: str, dev: str | None) -> list[str]:
        """``train`` on RTE from a GLUE folder (set as GLUE_DIR) holding these files only."""
        write(self.root / "glue" / "RTE" / "train.tsv", train)
        if dev is not None:
            write(self.root / "glue" / "RTE" / "dev.tsv", dev)
        self.env["GLUE_DIR"] = self.p("glue")
        return self.train("rte")

    def adapter(self, mutate: Callable[[Path], None] | None = None, name: str = "adapter") -> str:
        folder = self.root / name
        shutil.copytree(self.assets.adapter, folder)
        if mutate:
            mutate(folder)
        return str(folder)

    def model(self, mutate: Callable[[Path], None]) -> str:
        folder = self.root / "model"
        shutil.copytree(self.assets.tiny_llama, folder)
        mutate(folder)
        return str(folder)

    def run_folder(self, metrics: dict, adapter: Callable[[Path], None] | None = None) -> str:
        """A LoRA training run folder (``metrics.json`` + ``adapter/``) on tiny-llama."""
        folder = self.root / "run"
        self.adapter(adapter, name="run/adapter")
        base = {"status": "ok", "task": "toy", "label_names": ["neg", "pos"],
                "base_model_source": str(self.assets.tiny_llama), "is_decoder": True}
        write(folder / "metrics.json", json.dumps({**base, **metrics}))
        return str(folder)

    def study(self, body: str, encoding: str = "utf-8") -> str:
        return str(write(self.root / "study.yaml", body + f"out: {self.p('study-out')}\n", encoding))

    def bench(self, *extra: str) -> list[str]:
        return ["bench", "--out", self.p("out"), "--batch-size", "1", "requests=2", "warmup=0", *extra]

    def serve(self, *extra: str) -> list[str]:
        return ["serve", "--port", "1", *extra]


# Weight-file mutations (adapter and model folders).


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def pickle_weights(src: str, dst: str) -> Callable[[Path], None]:
    """Replace ``src`` (safetensors) by a pickled ``dst`` (torch.save) with the same tensors."""

    def mutate(folder: Path) -> None:
        import torch

        tensors = _tensors(folder / src)
        (folder / src).unlink()
        torch.save(tensors, folder / dst)

    return mutate


def remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def replace(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: write(folder / name, text)


def replace_key(name: str, key: str, value: object) -> Callable[[Path], None]:
    """Set ``key`` of the JSON object in ``name`` to ``value`` (None: remove it)."""

    def mutate(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        write(folder / name, json.dumps(data))

    return mutate


def truncate(name: str) -> Callable[[Path], None]:
    """Cut a file to half its length, as a full disk or an interrupted copy leaves it."""

    def mutate(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return mutate


TRUNCATED_ADAPTER = r"adapter/adapter_model\.safetensors: not a readable safetensors file \(.+\); it may be truncated"


def one_run(ws: Ws, adapter: Callable[[Path], None] | None = None) -> str:
    """A folder of runs holding one LoRA run of the toy task, its adapter folder changed by ``adapter``."""
    ws.run_folder({"method": "lora", "seed": 1}, adapter)
    return ws.p()


def truncated_runs(ws: Ws, **metrics) -> str:
    """A folder of runs holding one LoRA run (of the toy task), its adapter weights truncated."""
    ws.run_folder({"method": "lora", "seed": 1, **metrics}, truncate("adapter_model.safetensors"))
    return ws.p()


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A "billion laughs" YAML mapping: each level lists the previous one ``width`` times (width**levels values)."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_via_env(ws: Ws) -> list[str]:
    ws.env["RAY_ADDRESS"] = f"127.0.0.1:{closed_port()}"
    return ["study", "run", ws.study(STUDY_BASE + "executor: {kind: ray}\n")]


def drop_model_type(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.pop("model_type")
    write(folder / "config.json", json.dumps(config))


def drop_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()


def train_file_is_a_folder(ws: Ws) -> list[str]:
    ws.dir("train.csv")
    return ws.train(ws.task(train=None))


def not_a_study(ws: Ws) -> str:
    """A folder with a config.yaml that is a training run's, not a study's."""
    write(ws.root / "run" / "config.yaml", "task: sst2\nmethod: lora\nmodel: minilm\nseed: 42\n")
    return ws.p("run")


def study_with_skipped_note(ws: Ws, text: str) -> str:
    """A published study's records with ``text`` as the drift stage's ``skipped.json``."""
    folder = shutil.copytree(Path(__file__).resolve().parents[1] / "docs" / "results" / "frontier-minilm" / "records",
                             ws.root / "study")
    write(folder / "drift" / "skipped.json", text)
    return str(folder)


def study_with_provenance(ws: Ws, text: str) -> str:
    """A published study's records with ``text`` as its first training run's ``provenance.json`` (the one the
    report states)."""
    folder = shutil.copytree(Path(__file__).resolve().parents[1] / "docs" / "results" / "frontier-minilm" / "records",
                             ws.root / "study")
    write(min((folder / "train").glob("*/provenance.json")), text)
    return str(folder)


# --------------------------------------------------------------------------------------------
# The table: (id, argv builder, pattern the one error line must match).


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Ws], list[str]]
    pattern: str


def case(id: str, build: Callable[[Ws], list[str]], pattern: str):
    return pytest.param(Case(id, build, pattern), id=id)


CASES = [
    # ---- data files (user tasks and GLUE folders)
    case("data-missing-file", lambda ws: ws.train(ws.task(train=None)), r"train\.csv: file not found"),
    case("data-directory-not-file", train_file_is_a_folder,
         r"train\.csv.* directory"),
    case("data-empty-file", lambda ws: ws.train(ws.task(train="")), r"train\.csv: empty file"),
    case("data-utf16-bom", lambda ws: ws.train(ws.task(train_encoding="utf-16")),
         r"train\.csv:\d+: not valid UTF-8"),
    case("data-latin1", lambda ws: ws.train(ws.task(train=GOOD_TRAIN + "caf\xe9,pos\n", train_encoding="latin-1")),
         r"train\.csv:18: not valid UTF-8"),
    case("data-wrong-delimiter", lambda ws: ws.train(ws.task(train=GOOD_TRAIN.replace(",", ";"))),
         r"train\.csv:1: missing column 'text'"),
    case("data-label-not-in-labels", lambda ws: ws.train(ws.task(train=GOOD_TRAIN + "so so,maybe\n")),
         r"train\.csv:18: label 'maybe' in column 'label' is not one of \['neg', 'pos'\]"),
    case("data-dev-label-not-in-labels", lambda ws: ws.train(ws.task(dev=GOOD_DEV + "meh,maybe\n")),
         r"dev\.csv:8: label 'maybe'"),
    case("data-ragged-row", lambda ws: ws.train(ws.task(train=GOOD_TRAIN + "a,b,pos\n")),
         r"train\.csv:18: expected 2 fields"),
    case("data-empty-text", lambda ws: ws.train(ws.task(train=GOOD_TRAIN + " ,pos\n")),
         r"train\.csv:18: empty text in column 'text'"),
    case("data-one-label-only", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("labels: [neg, pos]\n", ""),
                                                            train="text,label\na,pos\nb,pos\n")),
         r"train\.csv: column 'label' has fewer than two distinct labels"),
    case("data-jsonl-malformed", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("train.csv", "train.jsonl"),
                                                             train='{"text": "a", "label": "pos"}\n{"text": \n',
                                                             train_name="train.jsonl")),
         r"train\.jsonl:2: not valid JSON"),
    case("data-jsonl-not-object", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("train.csv", "train.jsonl"),
                                                              train='["a", "pos"]\n', train_name="train.jsonl")),
         r"train\.jsonl:1: expected a JSON object"),
    case("data-jsonl-array-text", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("train.csv", "train.jsonl"),
                                                               train='{"text": ["a", "b"], "label": "pos"}\n',
                                                               train_name="train.jsonl")),
         r"train\.jsonl:1: column 'text' holds a JSON array or object; expected a string or a number"),
    case("data-empty-id", lambda ws: ws.train(ws.task(yaml=TASK_YAML + "id_column: id\n",
                                                      train="id,text,label\n1,a,pos\n,b,neg\n")),
         r"train\.csv:3: empty id in column 'id'"),
    case("data-unsupported-extension", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("train.csv", "train.txt"),
                                                                   train_name="train.txt")),
         r"train\.txt: unsupported file type '\.txt'"),
    case("data-duplicate-id", lambda ws: ws.train(ws.task(yaml=TASK_YAML + "id_column: id\n",
                                                          train="id,text,label\n1,a,pos\n1,b,neg\n")),
         r"train\.csv:3: duplicate id"),
    case("data-unclosed-quote", lambda ws: ws.train(ws.task(train=GOOD_TRAIN + '"never closed,pos\n')),
         r"train\.csv:\d+: malformed CSV"),
    case("data-header-only", lambda ws: ws.train(ws.task(dev="text,label\n")), r"dev\.csv: the validation split has no rows"),
    case("data-f1-three-labels", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("labels: [neg, pos]\n", "metrics: [f1]\n"),
                                                             train=GOOD_TRAIN + "meh,mid\n")),
         r"train\.csv: metric 'f1' \(binary\) needs exactly two labels"),
    case("glue-data-dir-missing", lambda ws: ws.train("rte", "data_dir=" + ws.p("nowhere")),
         r"nowhere: data_dir is not a directory"),
    case("glue-dev-file-missing", lambda ws: ws.train_rte(RTE_HEADER + "0\ta\tb\tentailment\n", None),
         r"RTE/dev\.tsv: file not found"),
    case("glue-ragged-row", lambda ws: ws.train_rte(RTE_HEADER + "0\ta\tentailment\n", RTE_HEADER),
         r"RTE/train\.tsv:2: expected 4 tab-separated fields"),
    # ---- task YAML
    case("task-unknown-name", lambda ws: ws.train("cola"), r"task 'cola': expected one of"),
    case("task-yaml-missing", lambda ws: ws.train(ws.p("nothere.yaml")), r"nothere\.yaml: task file not found"),
    case("task-yaml-is-directory", lambda ws: ws.train(ws.dir("dir.yaml")),
         r"dir\.yaml: is a directory"),
    case("task-files-train-int", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("train: train.csv", "train: 123"))),
         r"task\.yaml: 'files\.train': Input should be a valid string \(got 123\)"),
    case("task-labels-int", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("labels: [neg, pos]", "labels: 5"))),
         r"task\.yaml: 'labels': .*list"),
    case("task-labels-booleans", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("[neg, pos]", "[yes, no]"))),
         r"task\.yaml: 'labels\.0': YAML reads yes/no/on/off/true/false as a boolean; quote the name"),
    case("task-yaml-not-utf8", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("toy", "caf\xe9"), encoding="latin-1")),
         r"task\.yaml:1: not valid UTF-8"),
    case("task-yaml-syntax", lambda ws: ws.train(ws.task(yaml=TASK_YAML + "labels: [neg\n")), r"task\.yaml:\d+: not valid YAML"),
    case("task-yaml-top-level-list", lambda ws: ws.train(ws.task(yaml="- a\n- b\n")), r"task\.yaml: expected a mapping"),
    case("task-unknown-key", lambda ws: ws.train(ws.task(yaml=TASK_YAML + "label_col: x\n")), r"task\.yaml: unknown key 'label_col'"),
    case("task-missing-key", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("label_column: label\n", ""))),
         r"task\.yaml: 'label_column': Field required"),
    case("task-empty-label-column", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("label_column: label", "label_column: ''"))),
         r"task\.yaml: 'label_column'"),
    case("task-unknown-metric", lambda ws: ws.train(ws.task(yaml=TASK_YAML + "metrics: [auroc]\n")),
         r"task\.yaml: 'metrics\.0'.*'accuracy', 'f1', 'macro_f1', 'weighted_f1' or 'matthews'"),
    case("task-main-metric-not-in-metrics", lambda ws: ws.train(ws.task(yaml=TASK_YAML + "metrics: [accuracy]\nmain_metric: f1\n")),
         r"task\.yaml: main_metric 'f1' is not in metrics"),
    case("task-three-text-columns", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("[text]", "[a, b, c]"))),
         r"task\.yaml: 'text_columns'.*at most 2"),
    case("task-text-columns-mapping", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("[text]", "{a: 1}"))),
         r"task\.yaml: 'text_columns'"),
    case("task-unknown-split", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("validation: dev.csv", "validation: dev.csv, extra: x.csv"))),
         r"task\.yaml: 'files\.extra'.*'train', 'validation' or 'test'"),
    case("task-files-not-mapping", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("{train: train.csv, validation: dev.csv}", "train.csv"))),
         r"task\.yaml: 'files': Input should be a valid dictionary"),
    case("task-files-no-validation", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace(", validation: dev.csv", ""))),
         r"task\.yaml: 'files' must map at least 'train' and 'validation'"),
    case("task-duplicate-labels", lambda ws: ws.train(ws.task(yaml=TASK_YAML.replace("[neg, pos]", "[neg, neg]"))),
         r"task\.yaml: 'labels'.*distinct"),
    # ---- settings: options, --config files, key=value overrides
    case("override-without-equals", lambda ws: ws.train("rte", "epochs"), r"override 'epochs': expected key=value"),
    case("override-empty-key", lambda ws: ws.train("rte", "=3"), r"override '=3': empty key"),
    case("override-unknown-key", lambda ws: ws.train("rte", "learning_rate=1"), r"unknown key 'learning_rate'"),
    case("override-wrong-type", lambda ws: ws.train("rte", "epochs=abc"), r"'epochs': Input should be a valid number"),
    case("override-list-syntax", lambda ws: ws.train("rte", "lora_targets=[q_proj"),
         r"override 'lora_targets=\[q_proj': value is not valid YAML"),
    case("override-scalar-as-section", lambda ws: ws.train("rte", "epochs.x=1"), r"'epochs'"),
    case("seed-negative-option", lambda ws: ws.train("rte", "--seed", "-1"), r"'seed': a seed must be an integer from 0 to 4294967295 \(got -1\)"),
    case("seed-beyond-32-bits", lambda ws: ws.train("rte", "seed=4294967296"),
         r"'seed': a seed must be an integer from 0 to 4294967295 \(got 4294967296\)"),
    case("data-seed-negative", lambda ws: ws.train("rte", "data_seed=-5"), r"'data_seed': a seed must be an integer from 0 to 4294967295"),
    case("lr-zero", lambda ws: ws.train("rte", "lr=0"), r"'lr': Input should be greater than 0"),
    case("lr-negative", lambda ws: ws.train("rte", "lr=-1e-4"), r"'lr': Input should be greater than 0"),
    case("lr-nan", lambda ws: ws.train("rte", "lr=nan"), r"'lr': Input should be a finite number"),
    case("epochs-infinite", lambda ws: ws.train("rte", "epochs=inf"), r"'epochs': Input should be a finite number"),
    case("epochs-zero", lambda ws: ws.train("rte", "epochs=0"), r"'epochs': Input should be greater than 0"),
    case("train-limit-zero", lambda ws: ws.train("rte", "train_limit=0"), r"'train_limit': Input should be greater than 0"),
    case("eval-limit-negative", lambda ws: ws.train("rte", "eval_limit=-3"), r"'eval_limit': Input should be greater than 0"),
    case("batch-size-zero", lambda ws: ws.train("rte", "batch_size=0"), r"'batch_size': Input should be greater than 0"),
    case("warmup-ratio-one", lambda ws: ws.train("rte", "warmup_ratio=1"), r"'warmup_ratio': Input should be less than 1"),
    case("method-unknown", lambda ws: ws.train("rte", "--method", "qlora"), r"'method': Input should be 'lora' or 'full'"),
    case("report-to-bogus", lambda ws: ws.train(ws.task(), "report_to=bogus"), r"'report_to': unknown logger 'bogus'"),
    case("lora-target-unknown", lambda ws: ws.train(ws.task(), "lora_targets=[nope]"), r"lora_targets: module 'nope' not found"),
    case("lora-target-is-head", lambda ws: ws.train(ws.task(), "lora_targets=[score]"), r"lora_targets: 'score' is the classification head"),
    case("lora-target-not-adaptable", lambda ws: ws.train(ws.task(), "lora_targets=[norm]"), r"lora_targets: 'norm' is a LlamaRMSNorm"),
    case("config-duplicate-key", lambda ws: ws.train("rte", "--config", ws.file("c.yaml", "epochs: 1\nlr: 1e-3\nepochs: 2\n")),
         r"c\.yaml:3: not valid YAML \(duplicate key 'epochs'\)"),
    case("config-missing", lambda ws: ws.train("rte", "--config", ws.p("nope.yaml")), r"nope\.yaml: config file not found"),
    case("config-not-utf8", lambda ws: ws.train("rte", "--config", ws.file("c.yaml", "epochs: 1 # \xe9\n", "latin-1")),
         r"c\.yaml:1: not valid UTF-8"),
    case("config-top-level-list", lambda ws: ws.train("rte", "--config", ws.file("c.yaml", "- epochs\n")),
         r"c\.yaml: expected a mapping"),
    case("config-is-directory", lambda ws: ws.train("rte", "--config", ws.dir("c.yaml")),
         r"c\.yaml: is a directory"),
    case("config-unknown-key", lambda ws: ws.train("rte", "--config", ws.file("c.yaml", "epoch: 1\n")),
         r"c\.yaml: unknown key 'epoch'"),
    case("option-wrong-type", lambda ws: ws.train("rte", "--seed", "abc"), r"train: Invalid value for '--seed': .*valid integer"),
    case("option-missing-required", lambda ws: ["train", "--task", "rte"], r"Missing option '--out'"),
    case("option-unknown", lambda ws: ws.train("rte", "--epochs", "3"), r"No such option: --epochs"),
    # ---- output paths that cannot be made: refused before any work, by every command with --out
    case("out-under-a-file-train", lambda ws: ws.train("rte", "--out", ws.file("taken", "x") + "/sub"),
         r"--out .*taken/sub: .*taken is a file, not a folder"),
    case("out-under-a-file-bench", lambda ws: ws.bench(*TINY, "--adapter", f"sst2={ws.adapter()}", "--out", ws.file("taken", "x") + "/o"),
         r"--out .*taken/o: .*taken is a file, not a folder"),
    case("out-under-a-file-weights", lambda ws: ["weights", *TINY, "--runs", ws.dir("runs"), "--out", ws.file("taken", "x") + "/o"],
         r"--out .*taken/o: .*taken is a file, not a folder"),
    case("out-under-a-file-represent", lambda ws: ["represent", *TINY, "--task", "rte", "--out", ws.file("taken", "x") + "/r.safetensors"],
         r"--out .*taken/r\.safetensors: .*taken is a file, not a folder"),
    case("out-not-writable", lambda ws: ws.train("rte", "--out", "/proc/lorascope-out"),
         r"--out /proc/lorascope-out: cannot create anything in /proc"),
    case("out-without-a-name", lambda ws: ws.train("rte", "--out", "."), r"'\.': a result folder needs a path that ends in a folder name"),
    case("represent-out-is-a-folder", lambda ws: ["represent", *TINY, "--task", "rte", "--out", ws.dir("reps")],
         r"--out .*reps: is a folder; expected the path of a \.safetensors file"),
    # ---- base models
    case("model-unknown-name", lambda ws: ["train", "--task", "rte", "--model", "no/such/thing", "--out", ws.p("out")],
         r"model 'no/such/thing': not an alias"),
    case("model-folder-no-config", lambda ws: ws.train("rte", "--model", ws.model(remove("config.json"))),
         r"model '.*model': folder has no config\.json"),
    case("model-config-malformed", lambda ws: ws.train("rte", "--model", ws.model(replace("config.json", "{"))),
         r"model/config\.json: not valid JSON"),
    case("model-config-no-model-type", lambda ws: ws.train("rte", "--model", ws.model(drop_model_type)),
         r"model/config\.json: no 'model_type'"),
    case("model-folder-no-tokenizer", lambda ws: ws.train("rte", "--model", ws.model(drop_tokenizer)), r"model '.*model': cannot load its tokenizer"),
    case("model-path-is-file", lambda ws: ws.train("rte", "--model", ws.file("weights.txt", "x")),
         r"model '.*weights\.txt': not a folder"),
    case("model-pickle-only", lambda ws: ws.train("rte", "--model", ws.model(pickle_weights("model.safetensors", "pytorch_model.bin"))),
         r"pytorch_model\.bin: pickled weights are not loaded.*safe_serialization=True"),
    case("model-pickle-named-safetensors", lambda ws: ws.train("rte", "--model", ws.model(pickle_weights("model.safetensors", "model.safetensors"))),
         r"model\.safetensors: not a safetensors file"),
    case("hub-offline-train", lambda ws: ws.train("rte", "--model", "org/name"),
         r"model 'org/name': not found locally and the Hugging Face Hub is offline \(HF_HUB_OFFLINE=1\)"),
    case("hub-offline-alias", lambda ws: ws.train("rte", "--model", "tinyllama"), r"model 'tinyllama'.*offline"),
    case("hub-offline-represent", lambda ws: ["represent", "--model", "org/name", "--task", ws.task(), "--out", ws.p("r.safetensors")],
         r"model 'org/name': not found locally.*offline"),
    case("hub-offline-drift", lambda ws: ["drift", "--task", "rte", "--model", "org/name", "--runs", ws.dir("runs"), "--out", ws.p("out")],
         r"model 'org/name': not found locally.*offline"),
    case("hub-offline-bench", lambda ws: ws.bench("--model", "org/name"), r"model 'org/name': not found locally.*offline"),
    case("hub-offline-serve", lambda ws: ws.serve("--model", "org/name", "--adapter", f"sst2={ws.adapter()}"),
         r"model 'org/name': not found locally.*offline"),
    # ---- adapters and run folders
    case("adapter-folder-missing", lambda ws: ws.bench(*TINY, "--adapter", f"sst2={ws.p('nothere')}"), r"adapter 'sst2': .*nothere is not a folder"),
    case("adapter-no-config", lambda ws: ws.bench(*TINY, "--adapter", f"sst2={ws.adapter(remove('adapter_config.json'))}"),
         r"adapter 'sst2': .* adapter_config\.json"),
    case("adapter-config-malformed", lambda ws: ws.bench(*TINY, "--adapter", f"sst2={ws.adapter(replace('adapter_config.json', '{'))}"),
         r"adapter_config\.json: not valid JSON"),
    case("adapter-config-not-object", lambda ws: ws.bench(*TINY, "--adapter", f"sst2={ws.adapter(replace('adapter_config.json', '[1]'))}"),
         r"adapter_config\.json: expected a JSON object"),
    case("adapter-no-weights", lambda ws: ws.bench(*TINY, "--adapter", f"sst2={ws.adapter(remove('adapter_model.safetensors'))}"),
         r"adapter: no adapter_model\.safetensors"),
    case("adapter-pickle-only-bench", lambda ws: ws.bench(*TINY, "--adapter",
                                                          f"sst2={ws.adapter(pickle_weights('adapter_model.safetensors', 'adapter_model.bin'))}"),
         r"adapter_model\.bin: pickled weights are not loaded.*safe_serialization=True"),
    case("adapter-pickle-only-serve", lambda ws: ws.serve(*TINY, "--adapter",
                                                          f"sst2={ws.adapter(pickle_weights('adapter_model.safetensors', 'adapter_model.bin'))}"),
         r"adapter_model\.bin: pickled weights are not loaded"),
    case("adapter-pickle-named-safetensors", lambda ws: ws.bench(
        *TINY, "--adapter", f"sst2={ws.adapter(pickle_weights('adapter_model.safetensors', 'adapter_model.safetensors'))}"),
         r"adapter_model\.safetensors: not a safetensors file"),
    case("adapter-other-base", lambda ws: ws.bench("--model", "minilm", "--adapter", f"sst2={ws.adapter()}"),
         r"adapter 'sst2' .*does not fit base model 'minilm'"),
    case("adapter-other-base-serve", lambda ws: ws.serve("--model", "minilm", "--adapter", f"sst2={ws.adapter()}"),
         r"adapter 'sst2'|was it trained on a different base"),
    case("full-model-pickle-only", lambda ws: ws.bench(*TINY, "--full-model", ws.model(pickle_weights("model.safetensors", "pytorch_model.bin"))),
         r"pytorch_model\.bin: pickled weights are not loaded"),
    case("adapter-tasks-other-label-count", lambda ws: ws.bench(
        *TINY, "--adapter", f"x={ws.adapter()}", f"adapter_tasks.x={ws.task(yaml=TASK_YAML.replace('[neg, pos]', '[neg, pos, mid]'))}"),
         r"adapter_tasks\.x: task 'toy' has 3 labels, but adapter 'x' \(.*adapter\) has a 2-label head"),
    case("adapter-without-name", lambda ws: ws.bench(*TINY, "--adapter", ws.adapter()), r"--adapter '.*adapter': expected name=path"),
    case("adapter-bad-name", lambda ws: ws.bench(*TINY, "--adapter", f"a b={ws.adapter()}"), r"adapter name 'a b'"),
    case("adapter-name-twice", lambda ws: ws.bench(*TINY, "--adapter", f"x={ws.adapter()}", "--adapter", f"x={ws.p('adapter')}"),
         r"name 'x' given twice"),
    case("full-model-missing", lambda ws: ws.bench(*TINY, "--full-model", ws.p("nothere")), r"full model .*nothere: neither"),
    case("run-folder-failed", lambda ws: ["represent", "--model", ws.run_folder({"status": "failed", "reason": "diverged"}),
                                          "--task", ws.task(), "--out", ws.p("r.safetensors"), "n_samples=4"],
         r"run: training run did not finish successfully \(diverged\)"),
    case("run-folder-pickled-adapter", lambda ws: ["represent", "--model",
                                                   ws.run_folder({}, pickle_weights("adapter_model.safetensors", "adapter_model.bin")),
                                                   "--task", ws.task(), "--out", ws.p("r.safetensors"), "n_samples=4"],
         r"adapter_model\.bin: pickled weights are not loaded"),
    # A truncated adapter: the same line from every command that reads it.
    case("adapter-truncated-weights-lens", lambda ws: ["weights", *TINY, "--runs", truncated_runs(ws),
                                                       "--out", ws.p("out")],
         TRUNCATED_ADAPTER),
    case("adapter-truncated-drift", lambda ws: ["drift", "--task", "rte", *TINY, "--runs",
                                                truncated_runs(ws, task="rte", label_names=["entailment", "not_entailment"]),
                                                "--out", ws.p("out"), "n_samples=24", "max_length=32", "bootstrap=10"],
         TRUNCATED_ADAPTER),
    case("adapter-truncated-forgetting", lambda ws: ["forgetting", *TINY, "--runs", truncated_runs(ws),
                                                     "--out", ws.p("out"), "n_texts=4"],
         TRUNCATED_ADAPTER),
    case("adapter-truncated-represent", lambda ws: ["represent", "--model", ws.run_folder({}, truncate("adapter_model.safetensors")),
                                                    "--task", ws.task(), "--out", ws.p("r.safetensors"), "n_samples=4"],
         TRUNCATED_ADAPTER),
    case("adapter-truncated-bench", lambda ws: ws.bench(*TINY, "--adapter", f"sst2={ws.adapter(truncate('adapter_model.safetensors'))}"),
         TRUNCATED_ADAPTER),
    case("adapter-truncated-serve", lambda ws: ws.serve(*TINY, "--adapter",
                                                        f"sst2={ws.adapter(truncate('adapter_model.safetensors'))}"),
         TRUNCATED_ADAPTER),
    case("model-truncated-weights", lambda ws: ws.train("rte", "--model", ws.model(truncate("model.safetensors"))),
         r"model/model\.safetensors: not a readable safetensors file"),
    # ---- bench, serve, hpo, drift settings
    case("bench-batch-sizes-syntax", lambda ws: ws.bench(*TINY, "--batch-size", "1,x"), r"--batch-size 'x': expected a whole number"),
    case("bench-unknown-strategy", lambda ws: ws.bench(*TINY, "strategies=[nope]"), r"'strategies': .*unknown strategy 'nope'"),
    case("bench-requests-one", lambda ws: ws.bench(*TINY, "requests=1"), r"'requests': Input should be greater than or equal to 2"),
    case("serve-port-out-of-range", lambda ws: ws.serve(*TINY, "--port", "70000"), r"Invalid value for '--port'.*65535"),
    case("serve-port-negative", lambda ws: ["serve", *TINY, "--port", "-1"], r"Invalid value for '--port'.*greater than or equal to 0"),
    case("serve-threads-zero", lambda ws: ws.serve(*TINY, "--threads", "0"), r"Invalid value for '--threads'"),
    case("serve-adapter-root-missing", lambda ws: ws.serve(*TINY, "--adapter-root", ws.p("nothere")),
         r"--adapter-root .*nothere: not a folder"),
    case("serve-adapter-root-a-file", lambda ws: ws.serve(*TINY, "--adapter-root", ws.file("root", "x")),
         r"--adapter-root .*root: not a folder"),
    case("adapter-config-rank-a-string", lambda ws: ["weights", *TINY, "--runs",
                                                     one_run(ws, replace_key("adapter_config.json", "r", "x")), "--out", ws.p("out")],
         r"adapter/adapter_config\.json: 'r' must be a positive number \(got 'x'\)"),
    case("adapter-config-alpha-missing-weights", lambda ws: ["weights", *TINY, "--runs",
                                                             one_run(ws, replace_key("adapter_config.json", "lora_alpha", None)),
                                                             "--out", ws.p("out")],
         r"adapter/adapter_config\.json: no 'lora_alpha'"),
    case("forgetting-text-file-not-utf8", lambda ws: ["forgetting", *TINY, "--runs", one_run(ws), "--out", ws.p("out"),
                                                      "text_file=" + ws.file("texts.txt", "caf\xe9\n", "latin-1")],
         r"texts\.txt:1: not valid UTF-8"),
    case("serve-bad-dtype", lambda ws: ws.serve("--dtype", "fp16"), r"--dtype 'fp16'"),
    case("hpo-zero-trials", lambda ws: ["hpo", "--task", "rte", "--method", "lora", "--n-trials", "0", "--out", ws.p("out")],
         r"'n_trials': Input should be greater than 0"),
    case("hpo-unknown-space-param", lambda ws: ["hpo", "--task", "rte", "--method", "lora", "--out", ws.p("out"),
                                                "space.bogus.low=1", "space.bogus.high=2"],
         r"space\.bogus: unknown parameter 'bogus'"),
    case("hpo-bad-data", lambda ws: ["hpo", "--task", ws.task(train=GOOD_TRAIN + "so so,maybe\n"), "--method", "lora", *TINY,
                                     "--n-trials", "1", "--out", ws.p("out"), *QUICK],
         r"train\.csv:18: label 'maybe'"),
    case("drift-runs-missing", lambda ws: ["drift", "--task", "rte", *TINY, "--runs", ws.p("nothere"), "--out", ws.p("out")],
         r"nothere: runs folder not found"),
    case("represent-unknown-pooling", lambda ws: ["represent", *TINY, "--task", "rte", "--out", ws.p("r.safetensors"),
                                                  "poolings=[cls]"],
         r"'poolings\.0': Input should be 'mean' or 'head_token' \(got 'cls'\)"),
    case("drift-unknown-pooling", lambda ws: ["drift", "--task", "rte", *TINY, "--runs", ws.p("."),
                                              "--out", ws.p("out"), "pooling=cls"],
         r"'pooling': Input should be 'mean' or 'head_token' \(got 'cls'\)"),
    case("drift-too-few-samples-for-robustness", lambda ws: ["drift", "--task", "rte", *TINY, "--runs",
                                                             str(Path(ws.run_folder({"method": "lora", "seed": 1, "task": "rte",
                                                                                     "label_names": ["entailment", "not_entailment"]})).parent),
                                                             "--out", ws.p("out"), "n_samples=8", "max_length=16", "bootstrap=0"],
         r"drift: 8 samples are too few for the robustness measures .*raise n_samples or set robustness=false"),
    case("weights-epsilon-sweep-negative", lambda ws: ["weights", *TINY, "--runs", one_run(ws), "--out", ws.p("out"),
                                                       "epsilon_sweep=[-1, 0.5]"],
         r"'epsilon_sweep\.0': Input should be greater than 0 \(got -1\)"),
    case("study-epsilon-sweep-above-one", lambda ws: ["study", "run", ws.study(STUDY_BASE + "weights: {epsilon_sweep: [0.5, 2]}\n")],
         r"study\.yaml: 'weights\.epsilon_sweep\.1': Input should be less than or equal to 1 \(got 2\)"),
    case("sanity-threshold-negative", lambda ws: ["sanity", *TINY, "--task", "rte", "--method", "lora", "--threshold", "-1"],
         r"'threshold': Input should be greater than 0 \(got -1\.0\)"),
    case("sanity-threshold-nan", lambda ws: ["sanity", *TINY, "--task", "rte", "--method", "lora", "--threshold", "nan"],
         r"'threshold': Input should be a finite number"),
    case("sanity-max-epochs-zero", lambda ws: ["sanity", *TINY, "--task", "rte", "--method", "lora", "--max-epochs", "0"],
         r"'max_epochs': Input should be greater than 0 \(got 0\)"),
    case("baselines-draws-zero", lambda ws: ["baselines", "--task", "rte", "--draws", "0"],
         r"Invalid value for '--draws'.*greater than or equal to 1"),
    case("represent-zero-samples", lambda ws: ["represent", *TINY, "--task", "rte", "--out", ws.p("r.safetensors"), "n_samples=0"],
         r"'n_samples': Input should be greater than 0"),
    # ---- an output path where a file is in the way (a result renamed into place would move the file aside)
    case("out-is-a-file-train", lambda ws: [*ws.train(ws.task()), "--out", ws.file("out", "mine\n")],
         r"out: exists and is a file, not an output folder"),
    case("out-is-a-file-hpo", lambda ws: ["hpo", "--task", ws.task(), "--method", "lora", *TINY, "--n-trials", "1",
                                          "--out", ws.file("out", "mine\n"), *QUICK],
         r"out: exists and is a file, not an output folder"),
    case("out-is-a-folder-represent", lambda ws: ["represent", *TINY, "--task", ws.task(), "--out", ws.dir("r.safetensors")],
         r"r\.safetensors: is a folder; expected the path of a \.safetensors file"),
    case("out-is-a-file-data-split", lambda ws: ["data", "split", ws.file("all.csv", GOOD_TRAIN), "--text", "text", "--label",
                                                 "label", "--out", ws.file("out", "mine\n")],
         r"out: exists and is a file, not an output folder"),
    case("out-under-a-file-export", lambda ws: ["study", "export", study_with_provenance(ws, "{}"), ws.file("f", "mine\n") + "/x"],
         r"f/x: .*f is a file, not a folder"),
    # ---- study files and study folders
    case("study-yaml-missing", lambda ws: ["study", "run", ws.p("nothere.yaml")], r"nothere\.yaml: (config|study) file not found"),
    case("study-yaml-not-utf8", lambda ws: ["study", "run", ws.study("name: caf\xe9\n" + STUDY_BASE, "latin-1")], r"study\.yaml:1: not valid UTF-8"),
    case("study-unknown-stage", lambda ws: ["study", "run", ws.study(STUDY_BASE.replace("[baselines]", "[baselines, deploy]"))],
         r"study\.yaml: 'stages\.1': Input should be 'sanity'"),
    case("study-unknown-key", lambda ws: ["study", "run", ws.study(STUDY_BASE + "seed: 3\n")], r"study\.yaml: unknown key 'seed'"),
    case("study-unknown-task", lambda ws: ["study", "run", ws.study(STUDY_BASE.replace("[rte]", "[cola]"))], r"task 'cola': expected one of"),
    case("study-unknown-model", lambda ws: ["study", "run", ws.study(STUDY_BASE.replace("tiny-llama", "no/such/model")
                                                                      .replace("[baselines]", "[sanity]"))],
         r"model 'no/such/model'"),
    case("study-negative-seed", lambda ws: ["study", "run", ws.study(STUDY_BASE.replace("[1]", "[-1]"))],
         r"'seeds': a seed must be an integer from 0 to 4294967295 \(got \[-1\]\)"),
    case("study-empty-tasks", lambda ws: ["study", "run", ws.study(STUDY_BASE.replace("[rte]", "[]"))], r"'tasks': .*at least one"),
    case("study-bad-train-setting", lambda ws: ["study", "run", ws.study(STUDY_BASE + "train: {lr: 0}\n")], r"'lr': Input should be greater than 0"),
    case("study-sweep-values-not-a-list", lambda ws: ["study", "run", ws.study(STUDY_BASE + "sweep: {lora: {lr: 0.001}}\n")],
         r"study\.yaml: .*sweep\.lora\.lr: expected a list of at least two values, got 0\.001"),
    case("study-sweep-method-not-a-mapping", lambda ws: ["study", "run", ws.study(STUDY_BASE + "sweep: {lora: 3}\n")],
         r"study\.yaml: .*sweep\.lora: expected a mapping of setting -> values"),
    case("study-sweep-method-empty", lambda ws: ["study", "run", ws.study(STUDY_BASE + "sweep: {lora: }\n")],
         r"study\.yaml: .*sweep\.lora: name at least one setting to sweep"),
    case("study-out-under-a-file", lambda ws: ["study", "run", ws.study(STUDY_BASE), "out=" + ws.file("taken", "x") + "/sub"],
         r"out: .*taken/sub: .*taken is a file, not a folder"),
    case("study-out-is-file", lambda ws: ["study", "run", ws.study(STUDY_BASE), "out=" + ws.file("taken", "x")],
         r"out: .*taken: exists and is a file, not an output folder"),
    case("study-override-unknown-key", lambda ws: ["study", "run", ws.study(STUDY_BASE), "bogus=1"], r"unknown key 'bogus'"),
    case("study-only-syntax", lambda ws: ["study", "run", ws.study(STUDY_BASE), "--only", "stage=train"], r"--only 'stage=train'"),
    case("study-bench-override-unknown-key", lambda ws: ["study", "run", ws.study(STUDY_BASE + "bench: {overrides: {bogus: 1}}\n")],
         r"study\.yaml: 'bench\.overrides': .*not valid for `lorascope bench`: unknown key 'bogus'"),
    case("study-bench-override-wrong-type", lambda ws: ["study", "run", ws.study(STUDY_BASE + "bench: {overrides: {threads: x}}\n")],
         r"study\.yaml: 'bench\.overrides': .*not valid for `lorascope bench`: 'threads': Input should be a valid integer"),
    case("study-stages-empty", lambda ws: ["study", "run", ws.study(STUDY_BASE.replace("stages: [baselines]", "stages: []"))],
         r"study\.yaml: 'stages': .*must list at least one stage"),
    case("study-stages-twice", lambda ws: ["study", "run", ws.study(STUDY_BASE.replace("[baselines]", "[baselines, baselines]"))],
         r"study\.yaml: 'stages': .*list each stage once, in the order they run"),
    case("study-stages-out-of-order", lambda ws: ["study", "run", ws.study(STUDY_BASE.replace("[baselines]", "[report, baselines]"))],
         r"study\.yaml: 'stages': .*in the order they run \(sanity, baselines, hpo, .*\); got report, baselines"),
    case("study-only-unknown-task", lambda ws: ["study", "run", ws.study(STUDY_BASE), "--only", "task=cola"],
         r"--only task=cola: not a task of this study \(it has rte\)"),
    case("study-only-unknown-method", lambda ws: ["study", "run", ws.study(STUDY_BASE), "--only", "method=full"],
         r"--only method=full: not a method of this study \(it has lora\)"),
    case("study-only-unknown-seed", lambda ws: ["study", "run", ws.study(STUDY_BASE), "--only", "seed=2"],
         r"--only seed=2: not a seed of this study \(it has 1\)"),
    case("study-task-train-unknown-task", lambda ws: ["study", "run", ws.study(STUDY_BASE + "task_train: {cola: {lr: 0.001}}\n")],
         r"study\.yaml: .*task_train\.cola: not a task of this study \(its tasks: rte\)"),
    case("study-hpo-task-train-unknown-task", lambda ws: ["study", "run", ws.study(STUDY_BASE + "hpo: {task_train: {sst2: {lr: 0.001}}}\n")],
         r"study\.yaml: .*hpo\.task_train\.sst2: not a task of this study"),
    case("study-method-train-unknown-method", lambda ws: ["study", "run", ws.study(STUDY_BASE + "method_train: {qlora: {lr: 0.001}}\n")],
         r"study\.yaml: .*method_train\.qlora: neither lora, full nor a name under variants"),
    case("study-yaml-alias-bomb", lambda ws: ["study", "run", ws.study(alias_bomb() + STUDY_BASE)],
         r"study\.yaml: refused: its aliases expand to more than 100000 values"),
    case("config-yaml-alias-bomb", lambda ws: ws.train("rte", "--config", ws.file("c.yaml", alias_bomb())),
         r"c\.yaml: refused: its aliases expand to more than 100000 values"),
    case("config-yaml-recursive-alias", lambda ws: ws.train("rte", "--config", ws.file("c.yaml", "a: &a [1, *a]\n")),
         r"c\.yaml: refused: an alias refers to the node that contains it"),
    case("config-yaml-nested-too-deeply", lambda ws: ws.train("rte", "--config", ws.file("c.yaml", "a: " + "[" * 5000 + "]" * 5000)),
         r"c\.yaml: refused: nested too deeply"),
    case("study-ray-address-closed-port", lambda ws: ["study", "run", ws.study(
        STUDY_BASE + f"executor: {{kind: ray, address: '127.0.0.1:{closed_port()}'}}\n")],
         r"executor\.address '127\.0\.0\.1:\d+': no Ray cluster at 127\.0\.0\.1:\d+ \(Connection refused\)"),
    case("study-ray-address-from-env", ray_via_env, r"\$RAY_ADDRESS '127\.0\.0\.1:\d+': no Ray cluster"),
    case("study-ray-address-malformed", lambda ws: ["study", "run", ws.study(STUDY_BASE + "executor: {kind: ray, address: 'head:port'}\n")],
         r"executor\.address 'head:port': expected host:port"),
    case("study-status-not-a-study", lambda ws: ["study", "status", not_a_study(ws)], r"run: not a study folder \(config\.yaml: unknown key"),
    case("study-status-missing-folder", lambda ws: ["study", "status", ws.p("nothere")], r"nothere: not a study folder"),
    case("study-status-on-file", lambda ws: ["study", "status", ws.file("f.txt", "x")], r"f\.txt: not a study folder"),
    case("study-status-config-not-mapping", lambda ws: ["study", "status", str(Path(ws.file("config.yaml", "- a\n")).parent)],
         r"config\.yaml: expected a mapping"),
    case("report-not-a-study", lambda ws: ["report", not_a_study(ws)], r"run: not a study folder"),
    case("report-skipped-note-a-list", lambda ws: ["report", study_with_skipped_note(ws, '["sst2"]')],
         r"drift/skipped\.json: expected a JSON object of task -> why the stage skipped it"),
    case("report-skipped-note-not-json", lambda ws: ["report", study_with_skipped_note(ws, '{"sst2": ')],
         r"drift/skipped\.json: expected a JSON object of task -> why the stage skipped it"),
    case("report-provenance-not-json", lambda ws: ["report", study_with_provenance(ws, '{"seed": ')],
         r"provenance\.json: not a readable provenance record"),
    case("report-provenance-wrong-type", lambda ws: ["report", study_with_provenance(ws, '{"hardware": "x86"}')],
         r"provenance\.json.*hardware"),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture()
def no_server(monkeypatch):
    """A ``serve`` case that gets past validation fails instead of listening forever."""
    import uvicorn

    import lorascope.serve.http

    def refuse(*_args, **_kwargs):
        raise RuntimeError("the server was started: the bad input was not refused")

    monkeypatch.setattr(uvicorn, "run", refuse)
    monkeypatch.setattr(lorascope.serve.http, "serve", refuse)  # what `lorascope serve` calls


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(bad: Case, assets, tmp_path, monkeypatch, no_server):
    monkeypatch.chdir(tmp_path)  # relative paths land here, where they are checked
    ws = Ws(tmp_path, assets, {"GLUE_DIR": str(GLUE_DIR), "HF_HUB_OFFLINE": "1"})
    args = bad.build(ws)
    before = _tree(tmp_path)
    result = CliRunner().invoke(app, args, env=ws.env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the pytest report shows where it came from
    assert result.exit_code == 2, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert re.search(bad.pattern, lines[0]), lines[0]
    assert _tree(tmp_path) == before, f"left behind: {sorted(_tree(tmp_path) - before)}"
    assert not list(assets.adapter.parent.rglob("*.partial"))


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
    assert len({c.values[0].id for c in CASES}) == len(CASES), "case ids must be unique"


# --------------------------------------------------------------------------------------------
# The other half of the contract, and the study's rerun after a failed first stage.


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    """Only bad input is turned into one line: anything else is a bug and propagates."""
    import lorascope.train

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a genuine bug")

    monkeypatch.setattr(lorascope.train, "run_train", broken)
    task = Ws(tmp_path, None).task()  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["train", "--task", task, *TINY, "--out", str(tmp_path / "out")], catch_exceptions=True)
    assert isinstance(result.exception, ZeroDivisionError)
    assert result.exit_code == 1


def test_rich_markup_in_a_message_is_printed_verbatim(tmp_path):
    result = CliRunner().invoke(app, ["train", "--task", "rte", "--out", str(tmp_path / "o"), "[bold]x=1"],
                                catch_exceptions=True)
    assert result.exit_code == 2
    assert "[bold]" in result.stderr


@pytest.mark.slow
def test_study_rerun_after_a_failed_first_stage_is_not_a_mismatch(glue_dir, tmp_path):
    """The first stage fails on bad input (a wrong data_dir): the corrected study runs in the same folder."""
    out = tmp_path / "study-out"
    out.mkdir()  # an existing, empty folder: it stays, and holds no stale config.yaml
    body = STUDY_BASE + f"out: {out}\n"
    study = write(tmp_path / "study.yaml", body + f"data_dir: {tmp_path / 'nowhere'}\n")
    first = CliRunner().invoke(app, ["study", "run", str(study)], catch_exceptions=True)
    assert first.exit_code == 2, first.output
    assert "data_dir is not a directory" in first.stderr
    assert list(out.iterdir()) == []
    write(study, body + f"data_dir: {glue_dir}\n")
    second = CliRunner().invoke(app, ["study", "run", str(study)], catch_exceptions=True)
    assert second.exit_code == 0, second.output
    assert (out / "baselines" / "baselines.json").is_file() and (out / "config.yaml").is_file()


@pytest.mark.slow
def test_study_rerun_with_only_a_stale_config_yaml_is_accepted(glue_dir, tmp_path):
    """A folder whose first run was killed before any stage finished holds only config.yaml: no results to protect."""
    out = tmp_path / "study-out"
    write(out / "config.yaml", "name: study\nmodel: minilm\ntasks: [sst2]\nmethods: [full]\nseeds: [7]\nout: x\n")
    study = write(tmp_path / "study.yaml", STUDY_BASE + f"out: {out}\ndata_dir: {glue_dir}\n")
    result = CliRunner().invoke(app, ["study", "run", str(study)], catch_exceptions=True)
    assert result.exit_code == 0, result.output
    assert "tiny-llama" in (out / "config.yaml").read_text()


@pytest.mark.slow
def test_study_with_results_still_refuses_another_config(glue_dir, tmp_path):
    out = tmp_path / "study-out"
    study = write(tmp_path / "study.yaml", STUDY_BASE + f"out: {out}\ndata_dir: {glue_dir}\n")
    assert CliRunner().invoke(app, ["study", "run", str(study)]).exit_code == 0
    result = CliRunner().invoke(app, ["study", "run", str(study), "seeds=[2]"], catch_exceptions=True)
    assert result.exit_code == 2
    assert re.search(r"holds a study with a different configuration \(seeds", result.stderr)


@pytest.mark.slow
def test_real_process_prints_one_line(tmp_path):
    """Outside the test runner too: a real process prints the line and no traceback."""
    proc = subprocess.run([sys.executable, "-m", "lorascope.cli.main", "train", "--task", "rte", "--out", str(tmp_path / "o"),
                           "seed=-1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == [
        "error: config: 'seed': a seed must be an integer from 0 to 4294967295 (got -1)"
    ]


# --------------------------------------------------------------------------------------------
# Hostile YAML: refused before it is expanded, in a line that stays short.


def test_a_billion_laughs_is_refused_at_once_in_a_short_line(tmp_path):
    import time

    from lorascope.config import load_yaml
    from lorascope.errors import ConfigError

    path = write(tmp_path / "study.yaml", alias_bomb(levels=10, width=10) + "tasks: *l9\n")  # 10**10 values
    started = time.perf_counter()
    with pytest.raises(ConfigError) as refused:
        load_yaml(path, what="study file")
    assert time.perf_counter() - started < 0.5
    message = str(refused.value)
    assert message == f"{path}: refused: its aliases expand to more than 100000 values (an alias bomb?)"
    assert len(message) - len(str(path)) < 100


def test_aliases_and_merge_keys_within_the_bound_still_work(tmp_path):
    from lorascope.config import load_yaml, parse_overrides

    text = ("base: &base {lr: 0.001, epochs: 2}\n"
            "method_train: {lora: {<<: *base, lr: 0.005}, full: *base}\n"
            + alias_bomb(levels=4, width=10))  # 10**4 values: large for a config, within the bound
    data = load_yaml(write(tmp_path / "c.yaml", text))
    assert data["method_train"] == {"lora": {"lr": 0.005, "epochs": 2}, "full": {"lr": 0.001, "epochs": 2}}
    assert len(data["l3"]) == 10 and data["l3"][0][0][0] == ["lol"] * 10
    assert parse_overrides(["x=[&a [1, 2], *a]"]) == {"x": [[1, 2], [1, 2]]}


def test_an_alias_bomb_on_the_command_line_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["train", "--task", "rte", "--out", str(tmp_path / "o"),
                                      "lora_targets=" + "[&a [x, x, x, x, x, x, x, x, x, x], "
                                      + ", ".join(["*a"] * 10) + "]"])
    assert result.exit_code == 2  # within the bound: refused by validation, as any wrong value
    bomb = "[" + ", ".join(f"&l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * 10) + "]" for i in range(7)) + "]"
    result = CliRunner().invoke(app, ["train", "--task", "rte", "--out", str(tmp_path / "o"), f"lora_targets={bomb}"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: override 'lora_targets=")
    assert result.stderr.rstrip().endswith("...': refused: its aliases expand to more than 100000 values")
    assert len(result.stderr) < 200


def test_a_large_value_in_a_message_is_not_rendered_in_full():
    """A wrong value is shown cut to a few dozen characters, without building its whole rendering first."""
    from lorascope.config import _shown

    row = [0] * 1000
    huge = [row] * 1000  # a million entries, rendered in full only by repr
    assert len(_shown(huge)) <= 80 and _shown(huge).startswith("[[0, 0, 0")
    assert _shown(-1) == "-1" and _shown("cls") == "'cls'" and _shown([-1]) == "[-1]"


# --------------------------------------------------------------------------------------------
# A Ray address where no Ray answers: refused within the probe's bound, whatever is (not) there.


def test_a_silent_ray_address_is_refused_within_the_bound(tmp_path, monkeypatch):
    """Something accepts the connection and never answers (a firewall, a stuck process)."""
    import socket
    import time

    from lorascope.study import executor

    monkeypatch.setattr(executor, "RAY_CONNECT_TIMEOUT_S", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        study = write(tmp_path / "study.yaml", STUDY_BASE + f"out: {tmp_path / 'out'}\n"
                      f"executor: {{kind: ray, address: '127.0.0.1:{port}'}}\n")
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["study", "run", str(study)])
        assert time.perf_counter() - started < 5
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"error: executor.address '127.0.0.1:{port}': no Ray cluster at 127.0.0.1:{port} "
                                     "(no answer within 0.5 s); start one with 'ray start --head' or fix the address")
    assert not (tmp_path / "out").exists()


def test_a_ray_address_where_something_else_answers_is_refused():
    import http.server
    import threading

    from lorascope.study.executor import probe_grpc

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert probe_grpc("127.0.0.1", server.server_address[1], timeout_s=2) == \
            "something answers there, but not as Ray does (gRPC)"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("address", ["auto", "local", "ray://head:10001", "10.0.0.5:6379", "[::1]:6379", "head"])
def test_ray_address_forms(address):
    from lorascope.study.executor import _host_port

    expected = {"auto": None, "local": None, "ray://head:10001": ("head", 10001), "10.0.0.5:6379": ("10.0.0.5", 6379),
                "[::1]:6379": ("::1", 6379), "head": ("head", 6379)}[address]
    assert _host_port(address, "executor.address") == expected


# --------------------------------------------------------------------------------------------
# A truncated adapter met by the study's weights stage: the same one line as from `lorascope weights`.


@pytest.mark.slow
def test_study_weights_stage_on_a_truncated_adapter(glue_dir, assets, tmp_path):
    out = tmp_path / "study-out"
    study = write(tmp_path / "study.yaml", STUDY_BASE + f"out: {out}\ndata_dir: {glue_dir}\n")
    assert CliRunner().invoke(app, ["study", "run", str(study)]).exit_code == 0
    run = out / "train" / "rte-lora-s1"
    shutil.copytree(assets.adapter, run / "adapter")
    truncate("adapter_model.safetensors")(run / "adapter")
    write(run / "metrics.json", json.dumps({"status": "ok", "task": "rte", "method": "lora", "seed": 1,
                                            "label_names": ["entailment", "not_entailment"]}))
    result = CliRunner().invoke(app, ["study", "run", str(study), "stages=[weights]"], catch_exceptions=True)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(TRUNCATED_ADAPTER, lines[0]), result.stderr
    assert str(run / "adapter" / "adapter_model.safetensors") in lines[0]
