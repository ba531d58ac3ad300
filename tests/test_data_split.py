"""`lorascope data split`: one labelled file -> train and dev files plus a task file that loads them."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from lorascope.data import get_task, load_split
from lorascope.data.split import stratified_split
from tests.conftest import write
from tests.test_cli import run_cli


def labelled_csv(folder, n_pos: int = 30, n_neg: int = 10):
    """A header CSV with a quoted comma in every text, 30 ``pos`` and 10 ``neg`` rows interleaved."""
    rows = ["id,text,label"]
    for i in range(n_pos + n_neg):
        rows.append(f'{i},"row {i}, quoted",{"neg" if i % 4 == 0 and i // 4 < n_neg else "pos"}')
    return write(folder / "all.csv", "\n".join(rows) + "\n")


def split(source, out, *args):
    return run_cli("data", "split", str(source), "--out", str(out), *args)


def test_csv_split_is_stratified_seeded_and_loads_as_a_task(tmp_path):
    source = labelled_csv(tmp_path)
    result = split(source, tmp_path / "task", "--text", "text", "--label", "label", "--name", "mine")
    assert result.returncode == 0, result.stderr
    spec = get_task(str(tmp_path / "task" / "mine.yaml"))
    assert spec.name == "mine" and spec.label_names == ("neg", "pos") and not spec.is_pair
    train, dev = load_split(spec, "train").to_dict(), load_split(spec, "validation").to_dict()
    # Every row lands in exactly one part, texts intact; each label keeps its share (10 of 40 neg).
    assert sorted(train["text_a"] + dev["text_a"]) == sorted(f"row {i}, quoted" for i in range(40))
    assert Counter(dev["label"]) == {0: 2, 1: 6} and Counter(train["label"]) == {0: 8, 1: 24}
    # File order is kept in both parts.
    numbers = [int(t.split()[1].rstrip(",")) for t in train["text_a"]]
    assert numbers == sorted(numbers)
    # The same seed gives the same files; another seed another dev set.
    again = split(source, tmp_path / "again", "--text", "text", "--label", "label", "--name", "mine")
    assert again.returncode == 0 and (tmp_path / "again" / "dev.csv").read_text() == (tmp_path / "task" / "dev.csv").read_text()
    assert split(source, tmp_path / "other", "--text", "text", "--label", "label", "--seed", "1").returncode == 0
    assert (tmp_path / "other" / "dev.csv").read_text() != (tmp_path / "task" / "dev.csv").read_text()
    assert (tmp_path / "other" / "all.yaml").is_file()  # the name defaults to the file's stem


def test_jsonl_pair_lines_are_copied_as_written(tmp_path):
    lines = [json.dumps({"a": f"first {i}", "b": f"second {i}", "y": i % 3, "score": 0.5}) for i in range(12)]
    source = write(tmp_path / "pairs.jsonl", "\n".join(lines) + "\n")
    result = split(source, tmp_path / "out", "--text", "a", "--text", "b", "--label", "y", "--dev-fraction", "0.25")
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "out" / "train.jsonl").read_text().splitlines() + \
        (tmp_path / "out" / "dev.jsonl").read_text().splitlines()
    assert sorted(written) == sorted(lines)  # numbers stay numbers
    spec = get_task(str(tmp_path / "out" / "pairs.yaml"))
    assert spec.is_pair and spec.label_names == ("0", "1", "2")
    assert Counter(load_split(spec, "validation").to_dict()["label"]) == {0: 1, 1: 1, 2: 1}


def test_headerless_tsv_by_position(tmp_path):
    rows = [f"src\t{i % 2}\t\tsentence number {i}" for i in range(10)]
    source = write(tmp_path / "cola.tsv", "\n".join(rows) + "\n")
    result = split(source, tmp_path / "out", "--no-header", "--text", "3", "--label", "1")
    assert result.returncode == 0, result.stderr
    task_text = (tmp_path / "out" / "cola.yaml").read_text()
    assert "header: false" in task_text and "text_columns:\n- 3\n" in task_text
    spec = get_task(str(tmp_path / "out" / "cola.yaml"))
    assert len(load_split(spec, "train")) == 8 and load_split(spec, "validation")["text_a"][0].startswith("sentence")
    assert sorted((tmp_path / "out" / "train.tsv").read_text().splitlines() +
                  (tmp_path / "out" / "dev.tsv").read_text().splitlines()) == sorted(rows)


@pytest.mark.parametrize("content,args,message", [
    ("text,label\na,x\nb,y\nc,x\nd,y\n", ["--text", "label", "--label", "label"],
     r"all\.csv:1: column 'label' is given as --label and as --text"),
    ("text,label\na,x\nb,y\nc,x\nd,y\n", ["--text", "1", "--label", "label"],
     r"all\.csv:1: column 'label' is given as --label and as --text"),
    ("text,label\na,x\nb,y\nc,x\nd,y\n", ["--text", "txt", "--label", "label"], r"all\.csv:1: missing column 'txt'"),
    ("text,label\na,x\nb,y\nc,x\n", ["--text", "text", "--label", "label"],
     r"all\.csv: label 'y' has only 1 row; each label needs at least 2"),
    ("text,label\na,x\nb,x\n", ["--text", "text", "--label", "label"], r"all\.csv: column 'label' has 1 distinct label"),
    ("text,label\na,x\n ,y\nc,x\nd,y\n", ["--text", "text", "--label", "label"], r"all\.csv:3: empty text in column 'text'"),
    ("text,label\na,x\nb,\nc,x\nd,y\n", ["--text", "text", "--label", "label"], r"all\.csv:3: empty label in column 'label'"),
    ("text,label\na,x\nb,y\n", ["--text", "text", "--label", "label", "--dev-fraction", "1"],
     r"--dev-fraction 1\.0: expected a share of the rows, between 0 and 1"),
    ("text,label\na,x\nb,y\n", ["--text", "text", "--label", "label", "--name", "my task"], r"--name 'my task'"),
    ("text,label\n", ["--text", "text", "--label", "label"], r"all\.csv: no data rows"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, content, args, message):
    source = write(tmp_path / "all.csv", content)
    result = split(source, tmp_path / "out", *args)
    assert result.returncode == 2, result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "out").exists()


def test_existing_output_is_never_replaced_and_nothing_is_half_written(tmp_path):
    source = labelled_csv(tmp_path)
    out = tmp_path / "out"
    write(out / "dev.csv", "mine\n")
    result = split(source, out, "--text", "text", "--label", "label")
    assert result.returncode == 2 and "dev.csv: exists already" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["dev.csv"] and (out / "dev.csv").read_text() == "mine\n"


def test_every_label_is_in_both_parts_whatever_the_fraction():
    labels = ["a"] * 2 + ["b"] * 50 + ["c"] * 3
    for fraction in (0.01, 0.5, 0.99):
        train, dev = stratified_split(labels, fraction, seed=0, source="x")
        assert {labels[i] for i in train} == {labels[i] for i in dev} == {"a", "b", "c"}
        assert sorted(train + dev) == list(range(len(labels)))


def test_a_failed_write_leaves_none_of_the_files(tmp_path, monkeypatch):
    import os

    from lorascope.data import split as split_module

    source = labelled_csv(tmp_path)
    real, calls = os.replace, []

    def replace_then_fail(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(split_module.os, "replace", replace_then_fail)
    with pytest.raises(OSError, match="disk full"):
        split_module.split_labelled_file(source, tmp_path / "out", text_columns=["text"], label_column="label")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["--no-header"], r"--no-header: .*all\.jsonl is JSON Lines, whose keys name the columns"),
    (["--delimiter", ";"], r"--delimiter: .*all\.jsonl is JSON Lines, which has no delimiter"),
])
def test_layout_options_that_mean_nothing_for_json_lines_are_refused_by_name(tmp_path, args, message):
    # Not as a key of the task file, which the command had not written.
    source = write(tmp_path / "all.jsonl", "".join(json.dumps({"t": f"t {i}", "y": i % 2}) + "\n" for i in range(6)))
    result = split(source, tmp_path / "out", "--text", "t", "--label", "y", *args)
    assert result.returncode == 2 and re.search(message, result.stderr), result.stderr
    assert "out/all.yaml" not in result.stderr and not (tmp_path / "out").exists()
    # Digits name a key of a JSON Lines row, which has no column order.
    result = split(source, tmp_path / "out", "--text", "0", "--label", "y")
    assert result.returncode == 2 and re.search(r"all\.jsonl:1: missing column '0' \(keys: t, y\)", result.stderr)


def test_json_booleans_are_labels_as_the_file_writes_them(tmp_path):
    source = write(tmp_path / "all.jsonl", "".join(json.dumps({"t": f"t {i}", "ok": i % 2 == 0}) + "\n" for i in range(8)))
    result = split(source, tmp_path / "out", "--text", "t", "--label", "ok")
    assert result.returncode == 0, result.stderr
    spec = get_task(str(tmp_path / "out" / "all.yaml"))
    assert spec.label_names == ("false", "true") and len(load_split(spec, "train")) == 6


def test_the_current_folder_is_an_output_folder(tmp_path, monkeypatch):
    """``--out .`` writes beside the source: only result folders renamed into place need a name of their own."""
    source = labelled_csv(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = split(source.name, ".", "--text", "text", "--label", "label")
    assert result.returncode == 0, result.stderr
    assert {"train.csv", "dev.csv", "all.yaml"} <= {p.name for p in tmp_path.iterdir()}
