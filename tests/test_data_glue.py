"""GLUE loaders on the shipped files: row counts and label counts from the data README."""

from collections import Counter

import pytest

from lorascope.data import get_task, load_split, subsample

# (task, split) -> (rows, {label id: count}) from ../shared/data/glue/README.md
EXPECTED = {
    ("mrpc", "train"): (3668, {1: 2474, 0: 1194}),
    ("mrpc", "validation"): (408, {1: 279, 0: 129}),
    ("mrpc", "test"): (1725, {1: 1147, 0: 578}),
    ("sst2", "train"): (67349, {1: 37569, 0: 29780}),
    ("sst2", "validation"): (872, {1: 444, 0: 428}),
    ("sst2", "test"): (1821, {1: 904, 0: 917}),
    ("rte", "train"): (2490, {0: 1249, 1: 1241}),
    ("rte", "validation"): (277, {0: 146, 1: 131}),
    ("rte", "test"): (3000, {-1: 3000}),
}


@pytest.mark.slow
@pytest.mark.parametrize("task,split", sorted(EXPECTED))
def test_rows_and_labels_match_readme(glue_dir, task, split):
    ds = load_split(get_task(task), split)
    rows, labels = EXPECTED[(task, split)]
    assert len(ds) == rows
    assert dict(Counter(ds["label"])) == labels
    assert len(set(ds["id"])) == rows  # ids are unique


def test_quotes_are_kept_and_bom_is_stripped(glue_dir):
    mrpc = load_split(get_task("mrpc"), "train")
    assert any('"' in t for t in list(mrpc["text_a"]) + list(mrpc["text_b"]))  # quoting off: bare quotes survive
    assert all(not t.startswith("\ufeff") for t in mrpc["text_a"])
    sst = load_split(get_task("sst2"), "validation")
    assert list(sst["text_b"]) == [""] * len(sst)
    assert sst[0]["text_a"].startswith("it 's a charming and often affecting journey")


def test_rte_ids_come_from_index_column(glue_dir):
    dev = load_split(get_task("RTE"), "validation")
    assert list(dev["id"])[:3] == ["validation-0", "validation-1", "validation-2"]
    assert dev[0]["label"] == 1  # "not_entailment" -> 1 as in nyu-mll/glue


def test_subsample_is_deterministic_and_ordered(glue_dir):
    ds = load_split(get_task("sst2"), "train")
    a, b = subsample(ds, 100, seed=3), subsample(ds, 100, seed=3)
    c = subsample(ds, 100, seed=4)
    assert list(a["id"]) == list(b["id"]) != list(c["id"])
    rows = [int(i.split("-")[1]) for i in a["id"]]
    assert rows == sorted(rows)
    assert subsample(ds, None, 0) is ds
