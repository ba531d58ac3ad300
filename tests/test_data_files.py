"""User files, the Hub conversion and malformed input: every error names the file and row."""

import json
import re

import datasets
import pytest

from lorascope.data import get_task, load_split, with_label_set
from lorascope.data.examples import hub_to_examples
from lorascope.errors import ConfigError, DataError
from tests.conftest import write


def test_csv_task_with_inferred_labels(csv_task):
    spec = with_label_set(get_task(str(csv_task)))
    assert spec.label_names == ("neg", "pos")
    ds = load_split(spec, "train")
    assert len(ds) == 40
    assert ds[1]["text_a"] == "great, really 1" and ds[1]["label"] == 1


def test_jsonl_pair_task(tmp_path):
    lines = [f'{{"p": "a {i}", "h": "b {i}", "y": "{i % 3}"}}' for i in range(12)]
    write(tmp_path / "t.jsonl", "\n".join(lines))
    yaml_path = write(
        tmp_path / "t.yaml",
        "name: nli3\nfiles: {train: t.jsonl, validation: t.jsonl}\ntext_columns: [p, h]\n"
        "label_column: y\nlabels: ['0', '1', '2']\nmetrics: [accuracy, matthews]\n",
    )
    spec = get_task(str(yaml_path))
    ds = load_split(spec, "validation")
    assert spec.is_pair and spec.num_labels == 3
    assert ds[4]["text_b"] == "b 4" and ds[4]["label"] == 1


def test_hub_conversion_on_local_dataset():
    hub = datasets.Dataset.from_dict(
        {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 0], "idx": [7, 8]}
    )
    ds = hub_to_examples(get_task("rte"), hub, "validation")
    assert list(ds["id"]) == ["validation-7", "validation-8"]
    assert list(ds["text_b"]) == ["c", "d"] and list(ds["label"]) == [1, 0]
    bad = hub.rename_column("sentence2", "hypothesis")
    with pytest.raises(DataError, match="lacks column 'sentence2'"):
        hub_to_examples(get_task("rte"), bad, "validation")


GLUE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


@pytest.mark.parametrize(
    "content,message",
    [
        (GLUE_HEADER + "0\ta\tb\tentailment\n1\ta\tb\n", r"dev.tsv:3: expected 4 tab-separated fields"),
        (GLUE_HEADER + "0\ta\tb\tmaybe\n", r"dev.tsv:2: label 'maybe' in column 'label' is not one of"),
        ("index\tsentence1\tlabel\n0\ta\tentailment\n", r"dev.tsv:1: missing column 'sentence2'"),
        (GLUE_HEADER, r"dev.tsv: the validation split has no rows"),
        ("", r"dev.tsv: empty file"),
        (GLUE_HEADER + "0\t \tb\tentailment\n", r"dev.tsv:2: empty text in column 'sentence1'"),
        (GLUE_HEADER + "0\ta\tb\tentailment\n0\tc\td\tentailment\n", r"dev.tsv:3: duplicate id"),
    ],
)
def test_malformed_glue_file(tmp_path, content, message):
    write(tmp_path / "RTE" / "dev.tsv", content)
    with pytest.raises(DataError, match=message):
        load_split(get_task("rte"), "validation", data_dir=tmp_path)


def test_invalid_utf8_names_line(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_bytes(GLUE_HEADER.encode() + b"0\ta\xff\tb\tentailment\n")
    with pytest.raises(DataError, match=r"dev.tsv:2: not valid UTF-8"):
        load_split(get_task("rte"), "validation", data_dir=tmp_path)


def test_missing_glue_dir_and_file(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        load_split(get_task("rte"), "validation", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match=r"RTE/dev.tsv: file not found"):
        load_split(get_task("rte"), "validation", data_dir=tmp_path)


def test_bad_csv_and_jsonl(tmp_path):
    write(tmp_path / "bad.csv", 'text,label\n"unterminated,pos\n')
    write(tmp_path / "ragged.csv", "text,label\na,pos\nb,neg,extra\n")
    write(tmp_path / "bad.jsonl", '{"text": "a", "label": "pos"}\n{not json}\n')
    for name, msg in [("bad.csv", r"bad.csv:\d+: malformed CSV"), ("ragged.csv", r"ragged.csv:3: expected 2 fields"),
                      ("bad.jsonl", r"bad.jsonl:2: not valid JSON")]:
        y = write(tmp_path / f"{name}.yaml", f"name: t\nfiles: {{train: {name}, validation: {name}}}\n"
                  "text_columns: [text]\nlabel_column: label\nlabels: [neg, pos]\n")
        with pytest.raises(DataError, match=msg):
            load_split(get_task(str(y)), "train")


def test_bad_task_yaml(tmp_path):
    y = write(tmp_path / "t.yaml", "name: t\nfiles: {train: a.csv}\ntext_columns: [x]\nlabel_column: y\n")
    with pytest.raises(ConfigError, match="'files' must map at least 'train' and 'validation'"):
        get_task(str(y))
    y2 = write(tmp_path / "t2.yaml", "name: t\nfiles: {train: a.csv, validation: a.csv}\ntext_columns: [x]\n"
               "label_column: y\ncolour: red\n")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        get_task(str(y2))
    with pytest.raises(ConfigError, match="expected one of"):
        get_task("cola")


HEADERLESS = "header: false\n"
NAMED = "header: false\ncolumn_names: [src, label, mark, sentence]\n"


@pytest.mark.parametrize("texts,label,layout,shown", [
    ("[sentence]", "sentence", "", "'sentence'"),  # single text, by name
    ("sentence", "sentence", "", "'sentence'"),  # the single name written without brackets
    ("[sentence, label]", "label", "", "'label'"),  # the second of a pair
    ("[label, sentence]", "label", "", "'label'"),  # the first of a pair
    ("[3]", "3", "", "at position 3"),  # by position in a header file
    ("[0, 3]", "0", HEADERLESS, "'0'"),  # by position in a headerless file
    ("[3]", "'3'", HEADERLESS, "'3'"),  # a headerless file's column named by its position's text
    ("[sentence]", "3", NAMED, "'sentence'"),  # a name and a position of the same column
    ("[1, sentence]", "label", NAMED, "'label'"),
])
def test_a_column_is_text_or_label_not_both(tmp_path, texts, label, layout, shown):
    y = write(tmp_path / "t.yaml", f"name: t\nfiles: {{train: a.tsv, validation: a.tsv}}\n{layout}"
              f"text_columns: {texts}\nlabel_column: {label}\n")
    with pytest.raises(ConfigError, match=rf"t\.yaml: column {re.escape(shown)} is both 'label_column' and in "
                                          "'text_columns'; the label must not be part of the input text"):
        get_task(str(y))


@pytest.mark.parametrize("texts,label", [("[1]", "label"), ("[label]", "1"), ("[text, 1]", "label")])
def test_a_name_and_a_position_of_one_header_column_are_refused_when_read(tmp_path, texts, label):
    # Which name a position has in a file with a header is known only from the file.
    write(tmp_path / "a.csv", "text,label\nfine,pos\nbad,neg\n")
    y = write(tmp_path / "t.yaml", f"name: t\nfiles: {{train: a.csv, validation: a.csv}}\n"
              f"text_columns: {texts}\nlabel_column: {label}\n")
    with pytest.raises(DataError, match=r"a\.csv:1: column 'label' is both the task's label column and a text column"):
        load_split(get_task(str(y)), "train")


def test_a_task_name_names_folders(tmp_path):
    y = write(tmp_path / "t.yaml", "name: my/task\nfiles: {train: a.csv, validation: a.csv}\ntext_columns: x\n"
              "label_column: y\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: 'name': a task name is 1 to 48 letters, digits, '_' or '-'"):
        get_task(str(y))


def _jsonl_task(tmp_path, rows: list[dict], task_keys: str) -> str:
    write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    return str(write(tmp_path / "t.yaml", "name: t\nfiles: {train: t.jsonl, validation: t.jsonl}\n" + task_keys))


def test_jsonl_booleans_and_numbers_are_read_as_json_writes_them(tmp_path):
    # A task file's labels match the file's own words: `true`, never Python's `True`.
    rows = [{"id": i, "t": f"text {i}", "y": bool(i % 2), "score": i / 2} for i in range(6)]
    spec = get_task(_jsonl_task(tmp_path, rows, "text_columns: [t]\nlabel_column: y\nid_column: id\n"
                                                "labels: ['false', 'true']\n"))
    ds = load_split(spec, "train")
    assert ds["label"] == [0, 1, 0, 1, 0, 1] and ds["id"][:2] == ["train-0", "train-1"]
    inferred = with_label_set(get_task(_jsonl_task(tmp_path, rows, "text_columns: [t]\nlabel_column: y\n")))
    assert inferred.label_names == ("false", "true")
    # Float labels are their JSON text, which a task file's float keys give too.
    floats = [{"t": f"text {i}", "y": float(i % 2)} for i in range(4)]
    spec = get_task(_jsonl_task(tmp_path, floats, "text_columns: [t]\nlabel_column: y\nlabel_names: {0.0: zero, 1.0: one}\n"))
    assert load_split(spec, "train")["label"] == [0, 1, 0, 1]


@pytest.mark.parametrize("column,value", [("t", ["a", "b"]), ("y", {"gold": "pos"}), ("id", [1])])
def test_a_json_array_or_object_in_a_column_the_task_reads_is_refused(tmp_path, column, value):
    rows = [{"id": i, "t": f"text {i}", "y": ["neg", "pos"][i % 2], "meta": {"source": "web"}} for i in range(4)]
    rows[2][column] = value
    task = _jsonl_task(tmp_path, rows, "text_columns: [t]\nlabel_column: y\nid_column: id\nlabels: [neg, pos]\n")
    with pytest.raises(DataError, match=rf"t\.jsonl:3: column '{column}' holds a JSON array or object; "
                                        "expected a string or a number"):
        load_split(get_task(task), "train")
    rows[2][column] = {"t": "text 2", "y": "neg", "id": 2}[column]  # an object in a column it does not read is fine
    assert len(load_split(get_task(_jsonl_task(tmp_path, rows, "text_columns: [t]\nlabel_column: y\nid_column: id\n"
                                                               "labels: [neg, pos]\n")), "train")) == 4


@pytest.mark.parametrize("name,content,line", [
    ("t.jsonl", '{"id": 1, "t": "a", "y": "pos"}\n{"id": null, "t": "b", "y": "neg"}\n', 2),
    ("t.csv", "id,t,y\n1,a,pos\n ,b,neg\n", 3),
])
def test_an_empty_id_is_refused_by_name_not_as_a_duplicate(tmp_path, name, content, line):
    write(tmp_path / name, content)
    task = write(tmp_path / "t.yaml", f"name: t\nfiles: {{train: {name}, validation: {name}}}\ntext_columns: [t]\n"
                 "label_column: y\nid_column: id\nlabels: [neg, pos]\n")
    with pytest.raises(DataError, match=rf"{re.escape(name)}:{line}: empty id in column 'id'"):
        load_split(get_task(str(task)), "train")


def test_header_names_with_spaces_around_them_are_found(tmp_path):
    # A task file's names are read without surrounding spaces; the header's own are kept as written.
    write(tmp_path / "a.csv", " text , label \nfine,pos\nbad,neg\n")
    task = write(tmp_path / "t.yaml", "name: t\nfiles: {train: a.csv, validation: a.csv}\ntext_columns: text\n"
                 "label_column: label\n")
    ds = load_split(with_label_set(get_task(str(task))), "train")
    assert ds["text_a"] == ["fine", "bad"] and ds["label"] == [1, 0]


@pytest.mark.parametrize("name,content,keys,shown", [
    ("a.jsonl", '{"text": "a", "y": "pos"}\n', "text_columns: [text]\n", r"missing column 'label' \(keys: text, y\)"),
    ("a.csv", "a,pos\n", "header: false\ntext_columns: [0]\n",
     r"missing column 'label' \(no header, columns by position: 0, 1\)"),
    ("a.csv", "text,y\na,pos\n", "text_columns: [text]\n", r"missing column 'label' \(header has: text, y\)"),
])
def test_a_missing_column_says_where_the_names_come_from(tmp_path, name, content, keys, shown):
    write(tmp_path / name, content)
    task = write(tmp_path / "t.yaml", f"name: t\nfiles: {{train: {name}, validation: {name}}}\n{keys}"
                 "label_column: label\nlabels: [neg, pos]\n")
    with pytest.raises(DataError, match=shown):
        load_split(get_task(str(task)), "train")
