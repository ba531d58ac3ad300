"""A new user's own data end to end: headerless files, named integer labels, 3 classes, learning checks,
and bench / serve on adapters of a custom task without telling them the task again."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import f1_score

from lorascope.data import get_task, load_split
from lorascope.errors import ConfigError
from lorascope.models import load_run
from lorascope.serve.http import ServerSettings, build_app
from lorascope.train import TrainConfig, prepare_run, run_train
from tests.conftest import REPO, write
from tests.helpers import logits_of
from tests.test_cli import LORASCOPE

pytestmark = pytest.mark.usefixtures("single_thread")

GOOD = ["the cat sat on the mat", "she reads every morning", "they have finished the work", "we saw a film"]
BAD = ["cat the on sat mat the", "reads she morning every", "the work finished have they", "film a saw we"]
TINY = dict(model="tiny-llama", train_limit=None, eval_limit=None, epochs=1, batch_size=8, max_length=32, logging_steps=2)


def cola_like(folder, n: int) -> None:
    """GLUE CoLA's layout: no header, 4 tab-separated columns (source, 0/1 label, original mark, sentence)."""
    rows = []
    for i in range(n):
        label = i % 2
        sentence = (GOOD if label else BAD)[i % 4] + f" {i}"
        rows.append(f"src{i % 3}\t{label}\t{'' if label else '*'}\t{sentence}")
    write(folder / "in_domain_train.tsv", "\n".join(rows) + "\n")
    write(folder / "in_domain_dev.tsv", "\n".join(rows[: n // 2]) + "\n")


COLA_BY_NAME = """name: cola
files: {train: in_domain_train.tsv, validation: in_domain_dev.tsv}
header: false
column_names: [source, label, mark, sentence]
text_columns: sentence
label_column: label
label_names: {0: unacceptable, 1: acceptable}
metrics: [matthews, accuracy]
"""
COLA_BY_POSITION = """name: cola
files: {train: in_domain_train.tsv, validation: in_domain_dev.tsv}
header: false
text_columns: [3]
label_column: 1
label_names: {0: unacceptable, 1: acceptable}
metrics: [matthews, accuracy]
"""


@pytest.fixture()
def cola(tmp_path):
    cola_like(tmp_path, 48)
    return write(tmp_path / "by_name.yaml", COLA_BY_NAME), write(tmp_path / "by_position.yaml", COLA_BY_POSITION)


def test_headerless_tsv_by_column_names_and_by_position_read_the_same(cola):
    by_name, by_position = (load_split(get_task(str(p)), "train") for p in cola)
    assert len(by_name) == 48  # the first line is data, not a header
    assert by_name["text_a"] == by_position["text_a"] and by_name["label"] == by_position["label"]
    assert by_name["text_a"][0] == "cat the on sat mat the 0" and by_name["label"][:2] == [0, 1]
    assert get_task(str(cola[0])).label_names == ("unacceptable", "acceptable")


def test_layout_errors_name_the_key(tmp_path, cola):
    bad = write(tmp_path / "bad.yaml", COLA_BY_NAME.replace("header: false\n", ""))
    with pytest.raises(ConfigError, match="column_names.*header: false"):
        get_task(str(bad))
    bad = write(tmp_path / "bad2.yaml", COLA_BY_POSITION.replace("text_columns: [3]", "text_columns: [7]"))
    with pytest.raises(Exception, match=r"in_domain_train.tsv:1: no column at position 7 \(0-based; the file has 4 columns\)"):
        load_split(get_task(str(bad)), "train")
    bad = write(tmp_path / "bad3.yaml", COLA_BY_NAME.replace("text_columns: sentence", "text_columns: sentense"))
    with pytest.raises(ConfigError, match="column 'sentense' is not one of column_names"):
        get_task(str(bad))


def test_named_integer_labels_reach_metrics_and_the_server(tmp_path, cola):
    run = tmp_path / "run"
    metrics = run_train(TrainConfig(task=str(cola[1]), method="lora", lr=5e-3, **TINY), run, progress=False)
    assert metrics.label_names == ["unacceptable", "acceptable"]
    assert set(metrics.dev_per_label) == {"unacceptable", "acceptable"}
    assert metrics.dev_per_label["acceptable"]["support"] == 12
    assert set(metrics.dev) == {"matthews", "accuracy", "loss"}
    assert metrics.task_spec["layout"]["header"] is False
    app = build_app("tiny-llama", {"cola": str(run)}, ServerSettings(), device="cpu")
    with TestClient(app) as client:
        listed = client.get("/v1/adapters").json()["adapters"]
        assert listed == [{"name": "cola", "labels": ["unacceptable", "acceptable"], "task": "cola", "input": "single"}]
        answer = client.post("/v1/classify", json={"adapter": "cola", "inputs": ["the cat sat"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] in ("unacceptable", "acceptable")
        wrong = client.post("/v1/classify", json={"adapter": "cola", "inputs": ["ok", ["a", "b"]]})
        assert wrong.status_code == 422
        assert wrong.json()["error"]["code"] == "invalid_input" and "inputs[1]" in wrong.json()["error"]["message"]


@pytest.mark.slow
def test_bench_takes_custom_task_adapters_without_adapter_tasks(tmp_path, cola):
    from lorascope.bench import BenchConfig, run_bench

    run = tmp_path / "run"
    run_train(TrainConfig(task=str(cola[0]), method="lora", **TINY), run, progress=False)
    cfg = BenchConfig(model="tiny-llama", adapters={"mine": str(run)}, batch_sizes=[2], requests=2, warmup=0,
                      max_length=32, device="cpu", strategies=["lora_merged", "lora_separate"], check_rows=4)
    result = run_bench(cfg, tmp_path / "bench", show_progress=False).as_json()
    assert result["adapters"][0]["task"] == "cola"
    assert result["checks_passed"], result["checks"]


def three_class(folder) -> object:
    """A 3-class JSONL task with a pair of texts per row."""
    texts = {"neg": "awful dull boring", "neu": "a film with actors", "pos": "wonderful moving great"}
    rows = [{"premise": f"{texts[lab]} {i}", "hypothesis": f"row {i}", "y": lab}
            for i, lab in enumerate(["neg", "neu", "pos"] * 16)]
    write(folder / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    write(folder / "dev.jsonl", "\n".join(json.dumps(r) for r in rows[:24]) + "\n")
    return write(folder / "three.yaml", "name: three\nfiles: {train: train.jsonl, validation: dev.jsonl}\n"
                 "text_columns: [premise, hypothesis]\nlabel_column: y\nmetrics: [macro_f1, weighted_f1, accuracy]\n")


@pytest.mark.slow
def test_three_class_macro_f1_equals_scikit_learn_on_the_saved_model(tmp_path):
    task = three_class(tmp_path)
    cfg = TrainConfig(task=str(task), method="full", lr=1e-3, **TINY)
    metrics = run_train(cfg, tmp_path / "run", progress=False)
    assert metrics.main_metric == "macro_f1" and len(metrics.dev_per_label) == 3
    loaded = load_run(tmp_path / "run")
    dev = prepare_run(cfg).eval_ds
    pred = logits_of(loaded.model, loaded.tokenizer, dev, max_length=32).argmax(-1).numpy()
    gold = np.asarray(dev["labels"])
    assert metrics.dev["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro", labels=[0, 1, 2]), abs=1e-9)
    assert metrics.dev["weighted_f1"] == pytest.approx(f1_score(gold, pred, average="weighted", labels=[0, 1, 2]),
                                                          abs=1e-9)


@pytest.mark.slow
def test_constant_predictions_are_flagged(tmp_path):
    # Every training label is "pos": the model learns to answer "pos" whatever the text (and the
    # mostly-"pos" dev set makes the most confident checkpoint the best one by dev loss).
    rows = ["text,label"] + [f"text number {i},pos" for i in range(32)]
    write(tmp_path / "train.csv", "\n".join(rows) + "\n")
    write(tmp_path / "dev.csv", "text,label\n" + "\n".join(f"dev {i},{'neg' if i % 8 == 0 else 'pos'}" for i in range(16)) + "\n")
    task = write(tmp_path / "t.yaml", "name: const\nfiles: {train: train.csv, validation: dev.csv}\n"
                 "text_columns: text\nlabel_column: label\nlabels: [neg, pos]\n")
    metrics = run_train(TrainConfig(task=str(task), method="full", lr=1e-2, **{**TINY, "epochs": 4}), tmp_path / "run",
                        progress=False)
    check = metrics.learning_check
    assert check["majority_baseline"] == pytest.approx(14 / 16)
    assert check["learned"] is False and check["predicted_share"] == 1.0
    assert "every dev prediction is the same label" in check["reasons"]


def test_unreachable_hub_is_a_one_line_error_in_seconds(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))  # a closed port, an empty cache
    proc = subprocess.run([*LORASCOPE, "train", "--task", "sst2", "--model", "someorg/somemodel", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "the Hub cannot be reached" in proc.stderr and "local folder" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_classifier_folder_with_another_head_width_gets_a_fresh_head(tmp_path, caplog):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from lorascope.models import load_classifier
    from lorascope.models.registry import resolve_model

    folder = tmp_path / "two-way"
    BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=32, num_labels=2)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model("minilm")).save_pretrained(folder)
    with caplog.at_level("WARNING", logger="lorascope"):
        loaded = load_classifier(str(folder), ("neg", "neu", "pos"), seed=0)
    assert loaded.model.config.num_labels == 3 and loaded.model.classifier.weight.shape == (3, 16)
    assert "classification head has 2 outputs and the task has 3 labels" in caplog.text


def test_every_readme_task_example_is_a_shipped_file_that_loads():
    import re

    from lorascope.data.tasks import TaskFile

    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(# (examples/tasks/\S+\.yaml).*?)```", readme, re.S)
    assert len(blocks) == 5
    for text, path in blocks:
        assert (REPO / path).read_text() == text, f"README's {path} differs from the file"
        spec = get_task(str(REPO / path))
        for split in ("train", "validation"):
            assert len(load_split(spec, split)) > 0
    section = readme[readme.index("### Your own data"):readme.index("**When the input is wrong.**")]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert documented == set(TaskFile.model_fields), "the README's key table and the task schema differ"


@pytest.mark.slow
def test_drift_and_represent_take_the_task_from_the_run_folders(tmp_path, cola):
    from lorascope.data.tasks import task_of_run
    from lorascope.drift import DriftConfig, run_drift

    runs = tmp_path / "runs"
    for method in ("lora", "full"):
        run_train(TrainConfig(task=str(cola[0]), method=method, **TINY), runs / f"cola-{method}", progress=False)
    assert task_of_run(runs / "cola-lora") == get_task(str(cola[0]))
    result = run_drift(DriftConfig(base="tiny-llama", runs=str(runs), n_samples=16, max_length=32, bootstrap=0),
                       tmp_path / "drift").as_json()
    assert result["task"] == "cola" and result["n_samples"] == 16 and len(result["runs"]) == 2
    write(runs / "other" / "metrics.json", json.dumps({"task": "sst2", "status": "ok"}))
    with pytest.raises(Exception, match=r"runs of 2 tasks \(cola, sst2\); name one with task=<task>"):
        run_drift(DriftConfig(base="tiny-llama", runs=str(runs)), tmp_path / "drift2")
