"""Hostile input: every request a client can send gets a 2xx or a structured 4xx, never a 5xx.

The base is the 2-layer random ``tiny-llama``: a decoder whose tokenizer adds no BOS, so a text
without tokens leaves a row with no tokens at all (the case that used to answer 500). Also here:
the connection survives an unexpected error, one bad job never fails its batch, and training and
extraction refuse rows without tokens, naming the row.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import datasets
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lorascope.bench.synthetic import make_synthetic_adapters
from lorascope.data.tokenize import tokenize_dataset
from lorascope.errors import DataError
from lorascope.models import load_classifier
from lorascope.models.base_recipe import open_base
from lorascope.represent.extract import extract
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http import AdapterMeta, ServerSettings, TextEncoder, create_app
from lorascope.serve.http.engine import ClassifyJob, EmptyRow
from tests.conftest import write

pytestmark = pytest.mark.usefixtures("single_thread")

MAX_CHARS = 200
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def base_and_adapters(tmp_path_factory):
    """The tiny-llama recipe and synthetic adapters for a single-text task (sst2) and a pair task (mrpc)."""
    root = tmp_path_factory.mktemp("hostile-adapters")
    spec = open_base("tiny-llama", ("negative", "positive"), seed=0)
    sources = make_synthetic_adapters(spec, ["sst2", "mrpc"], 2, root, r=4, alpha=8, targets=None, seed=1)
    return spec, {s.name: s for s in sources}


def hostile_app(base_and_adapters, **settings):
    """sst2 (single texts), mrpc (pairs) and ``anytask``: the sst2 weights with no known task, so either kind is accepted."""
    spec, sources = base_and_adapters
    folders = {name: s.folder for name, s in sources.items()} | {"anytask": sources["sst2"].folder}
    runtime = MultiAdapterRuntime.from_folders(spec.load("fp32", "cpu"), folders)
    meta = {name: AdapterMeta(s.label_names, s.task) for name, s in sources.items()}
    meta["anytask"] = AdapterMeta(sources["sst2"].label_names, None)
    encoder = TextEncoder(spec.tokenizer, spec.is_decoder, max_length=32)
    return create_app(runtime, encoder, ServerSettings(max_input_chars=MAX_CHARS, **settings), meta)


@pytest.fixture(scope="module")
def client(base_and_adapters):
    with TestClient(hostile_app(base_and_adapters)) as c:
        yield c


def classify(adapter: str, *inputs) -> bytes:
    return json.dumps({"adapter": adapter, "inputs": list(inputs)}).encode()


def raw(body: str) -> bytes:
    """A body written by hand: JSON escapes such as lone surrogates that json.dumps would not produce."""
    return body.encode()


def assert_structured(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"] and "\n" not in body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


HOSTILE = [
    # (id, body, status, code, text the message must contain)
    ("empty", classify("sst2", ""), 422, "empty_input", "inputs[0]: the text is empty"),
    ("empty-after-good", classify("sst2", "fine", "ok", ""), 422, "empty_input", "inputs[2]"),
    ("whitespace", classify("sst2", " \t\n\u3000"), 422, "empty_input", "only whitespace"),
    ("zero-width", classify("sst2", "\u200b\u200c\ufeff"), 422, "empty_input", "has no tokens"),
    ("nul", classify("sst2", "\x00"), 422, "empty_input", "inputs[0]"),
    ("control", classify("sst2", "\x01\x02\x1b\x7f"), 422, "empty_input", "inputs[0]"),
    ("pair-second-empty", classify("mrpc", ["a", "b"], ["fine", ""]), 422, "empty_input", "inputs[1][1]"),
    ("pair-first-tokenless", classify("mrpc", ["\u200b", "b"]), 422, "empty_input", "inputs[0][0]"),
    ("lone-surrogate", raw('{"adapter": "sst2", "inputs": ["ok", "ab\\ud800cd"]}'), 422, "invalid_text",
     "inputs[1]: not valid Unicode (lone surrogate U+D800 at character 2)"),
    ("lone-low-surrogate-in-pair", raw('{"adapter": "mrpc", "inputs": [["x", "\\udfff"]]}'), 422, "invalid_text", "inputs[0][1]"),
    ("utf8-encoded-surrogate", b'{"adapter": "sst2", "inputs": ["\xed\xa0\x80"]}', 422, "invalid_text", "U+D800"),
    ("invalid-utf8", b'{"adapter": "sst2", "inputs": ["\xff\xfe\xc0"]}', 422, "invalid_request", "not valid UTF-8"),
    ("truncated-utf8", b'{"adapter": "sst2", "inputs": ["\xe2\x82"]}', 422, "invalid_request", "not valid UTF-8"),
    ("deeply-nested", b'{"adapter": "sst2", "inputs": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", 422, "invalid_request",
     "too deeply"),
    ("nested-lists", b'{"adapter": "sst2", "inputs": ' + b"[" * 300 + b'"a"' + b"]" * 300 + b"}", 422, "invalid_request", ""),
    ("huge-integer", b'{"adapter": "sst2", "inputs": [' + b"9" * 5000 + b"]}", 422, "invalid_request", ""),
    ("not-json", b"adapter=sst2&inputs=x", 422, "invalid_request", ""),
    ("empty-body", b"", 422, "invalid_request", ""),
    ("array-body", b"[]", 422, "invalid_request", ""),
    ("null-body", b"null", 422, "invalid_request", ""),
    ("inputs-a-string", raw('{"adapter": "sst2", "inputs": "text"}'), 422, "invalid_request", "inputs"),
    ("inputs-an-object", raw('{"adapter": "sst2", "inputs": {"a": "b"}}'), 422, "invalid_request", "inputs"),
    ("input-null", raw('{"adapter": "sst2", "inputs": [null]}'), 422, "invalid_request", ""),
    ("input-number", raw('{"adapter": "sst2", "inputs": [1.5e308]}'), 422, "invalid_request", ""),
    ("input-bool", raw('{"adapter": "sst2", "inputs": [true]}'), 422, "invalid_request", ""),
    ("pair-of-numbers", raw('{"adapter": "mrpc", "inputs": [[1, 2]]}'), 422, "invalid_request", ""),
    ("empty-pair", raw('{"adapter": "mrpc", "inputs": [[]]}'), 422, "invalid_input", "got 0 texts"),
    ("one-text-pair", raw('{"adapter": "mrpc", "inputs": [["a"]]}'), 422, "invalid_input", "got 1 texts"),
    ("adapter-number", raw('{"adapter": 7, "inputs": ["a"]}'), 422, "invalid_request", "adapter"),
    ("adapter-null", raw('{"adapter": null, "inputs": ["a"]}'), 422, "invalid_request", "adapter"),
    ("adapter-surrogate", raw('{"adapter": "\\ud800", "inputs": ["a"]}'), 422, "invalid_adapter_name", ""),
    ("adapter-trailing-newline", raw('{"adapter": "sst2\\n", "inputs": ["a"]}'), 422, "invalid_adapter_name", ""),
    ("adapter-nul", raw('{"adapter": "sst2\\u0000", "inputs": ["a"]}'), 422, "invalid_adapter_name", ""),
    ("unknown-field-surrogate", raw('{"adapter": "sst2", "inputs": ["a"], "\\ud800": 1}'), 422, "invalid_request", ""),
    ("unknown-field-huge", raw('{"adapter": "sst2", "inputs": ["a"], "' + "k" * 50_000 + '": 1}'), 422, "invalid_request", "..."),
    ("pair-to-single-adapter", classify("sst2", "fine", ["a", "b"]), 422, "invalid_input",
     "inputs[1]: adapter 'sst2' (task sst2) classifies single texts"),
    ("single-to-pair-adapter", classify("mrpc", ["a", "b"], ["c", "d"], "lonely"), 422, "invalid_input",
     "inputs[2]: adapter 'mrpc' (task mrpc) classifies sentence pairs"),
    ("too-long", classify("sst2", "x" * (MAX_CHARS + 1)), 413, "input_too_long", "inputs[0]"),
    ("too-long-second-of-pair", classify("mrpc", ["a", "y" * (MAX_CHARS + 1)]), 413, "input_too_long", "inputs[0][1]"),
]


@pytest.mark.parametrize("body,status,code,says", [pytest.param(*c[1:], id=c[0]) for c in HOSTILE])
def test_hostile_body_gets_a_structured_4xx_and_the_server_keeps_serving(client, body, status, code, says):
    error = assert_structured(client.post("/v1/classify", content=body, headers=JSON), status, code)
    assert says in error["message"]
    assert len(error["message"]) <= 500
    assert client.post("/v1/classify", json={"adapter": "sst2", "inputs": ["still serving"]}).status_code == 200


ACCEPTED = [
    ("nul-inside-text", ["a\x00b"]),
    ("control-inside-text", ["tab\tand\x1bescape"]),
    ("longest-allowed-token", ["x" * MAX_CHARS]),
    ("one-character", ["a"]),
    ("emoji-and-rtl", ["\U0001f600 \u05e9\u05dc\u05d5\u05dd \u202eabc"]),
    ("combining-marks-and-word", ["e\u0301\u0301\u0301 word"]),
    ("private-use-and-noncharacter", ["\ue000\ufdd0\uffff ok"]),
]


@pytest.mark.parametrize("inputs", [pytest.param(c[1], id=c[0]) for c in ACCEPTED])
def test_odd_but_valid_text_is_classified(client, inputs):
    response = client.post("/v1/classify", json={"adapter": "sst2", "inputs": inputs})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(inputs)


def test_an_adapter_of_unknown_task_takes_both_singles_and_pairs(client):
    response = client.post("/v1/classify", json={"adapter": "anytask", "inputs": ["one text", ["a", "pair"]]})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"])
def test_any_content_type_gets_an_answer_not_a_5xx(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post("/v1/classify", content=classify("sst2", "fine"), headers=headers)
    assert response.status_code < 500
    if response.status_code != 200:
        assert_structured(response, response.status_code)


def test_other_endpoints_take_hostile_bodies_and_paths(client):
    assert_structured(client.post("/v1/adapters", content=b"\xff", headers=JSON), 422, "invalid_request")
    assert_structured(client.post("/v1/adapters", content=raw('{"name": "x", "path": "\\ud800"}'), headers=JSON), 403)
    assert_structured(client.delete("/v1/adapters/%00"), 422, "invalid_adapter_name")
    assert_structured(client.delete("/v1/adapters/" + "a" * 5000), 422, "invalid_adapter_name")
    assert_structured(client.get("/v1/adapters/%ff%fe"), 405)


def test_error_messages_quoting_a_lone_surrogate_or_a_huge_value_still_render():
    from lorascope.serve.http.errors import error_response

    response = error_response(422, "invalid_request", "field '\ud800' " + "k" * 10_000)
    body = json.loads(response.body)
    assert body["error"]["message"].startswith("field '\\ud800' kkk") and len(body["error"]["message"]) == 500


def test_an_unexpected_error_is_a_structured_500_not_an_exception(base_and_adapters, monkeypatch):
    app = hostile_app(base_and_adapters)

    def broken(jobs):
        raise RuntimeError("a bug in the model path")

    with TestClient(app) as c:  # raise_server_exceptions: an exception escaping the app would fail here
        monkeypatch.setattr(app.state.batcher, "process", broken)
        error = assert_structured(c.post("/v1/classify", json={"adapter": "sst2", "inputs": ["x"]}), 500, "internal_error")
        assert "RuntimeError" in error["message"] and "a bug" not in error["message"]


def test_a_job_with_an_empty_row_fails_alone_not_its_whole_batch(base_and_adapters):
    app = hostile_app(base_and_adapters)
    engine, encoder = app.state.engine, app.state.engine.encoder
    good = ClassifyJob("sst2", encoder.encode(["fine"]))
    empty = ClassifyJob("mrpc", [{"input_ids": [], "attention_mask": []}])
    results = engine.classify([good, empty, good])
    assert isinstance(results[1], EmptyRow)
    assert results[0].shape == (1, 2) and results[2].shape == (1, 2)


# --------------------------------------------------------------------------------------------
# A real socket: the keep-alive connection survives errors.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(base_and_adapters):
    app = hostile_app(base_and_adapters)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield app, port
    server.should_exit = True
    thread.join(timeout=10)


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, dict]:
    conn.request("POST", "/v1/classify", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_keep_alive_connection_survives_hostile_requests(live_server):
    _, port = live_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        assert _post(conn, classify("sst2", "fine"))[0] == 200
        sock = conn.sock
        for body in (classify("sst2", ""), raw('{"adapter": "sst2", "inputs": ["\\ud800"]}'), b'{"\xff": 1}',
                     classify("sst2", "\u200b")):
            status, answer = _post(conn, body)
            assert status == 422 and answer["error"]["code"], answer
            status, answer = _post(conn, classify("sst2", "the same connection still serves"))
            assert status == 200, answer
        assert conn.sock is sock  # never reconnected: http.client would raise on a closed connection anyway
    finally:
        conn.close()


def test_keep_alive_connection_survives_an_unexpected_error(live_server, monkeypatch):
    app, port = live_server
    real = app.state.batcher.process
    calls = iter([RuntimeError("a bug")])

    def broken_once(jobs):
        err = next(calls, None)
        if err is not None:
            raise err
        return real(jobs)

    monkeypatch.setattr(app.state.batcher, "process", broken_once)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        status, answer = _post(conn, classify("sst2", "fine"))
        assert status == 500 and answer["error"]["code"] == "internal_error"
        status, answer = _post(conn, classify("sst2", "fine again"))
        assert status == 200, answer
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Training and extraction refuse rows without tokens, naming the row.


def _uniform(texts_a, texts_b=None, split="train") -> datasets.Dataset:
    n = len(texts_a)
    return datasets.Dataset.from_dict({"id": [f"{split}-{i}" for i in range(n)], "text_a": list(texts_a),
                                       "text_b": list(texts_b or [""] * n), "label": [0] * n})


@pytest.fixture(scope="module")
def tokenizers():
    """(tokenizer, is_decoder) of a decoder without BOS (tiny-llama) and an encoder (MiniLM)."""
    from lorascope.models.load import load_tokenizer
    from lorascope.models.registry import resolve_model

    return {"tiny-llama": (load_tokenizer(resolve_model("tiny-llama"), True), True),
            "minilm": (load_tokenizer(resolve_model("minilm"), False), False)}


@pytest.mark.parametrize("model", ["tiny-llama", "minilm"])
@pytest.mark.parametrize("texts_a,texts_b,example,column", [
    (["fine", "ok", "\u200b"], None, "train-2", "text_a"),
    (["fine", "\x00\x01"], None, "train-1", "text_a"),
    (["fine", "ok"], ["good", "\ufeff"], "train-1", "text_b"),
    (["\u200b", "ok"], ["good", "\ufeff"], "train-0", "text_a"),
])
def test_tokenize_dataset_refuses_a_row_without_tokens_naming_it(tokenizers, model, texts_a, texts_b, example, column):
    tokenizer, is_decoder = tokenizers[model]
    ds = _uniform(texts_a, texts_b)
    with pytest.raises(DataError) as info:
        tokenize_dataset(ds, tokenizer, is_pair=texts_b is not None, is_decoder=is_decoder, max_length=32,
                         source="task toy, split train")
    message = str(info.value)
    assert message.startswith(f"task toy, split train: example '{example}': {column} ")
    assert "tokenises to no tokens" in message and "\n" not in message


def test_tokenize_dataset_keeps_rows_that_have_tokens(tokenizers):
    tokenizer, _ = tokenizers["tiny-llama"]
    ds = tokenize_dataset(_uniform(["a\x00b", "\u200bword"]), tokenizer, is_pair=False, is_decoder=True, max_length=32)
    assert all(len(ids) > 0 for ids in ds["input_ids"])


def test_extract_refuses_a_row_without_tokens(tokenizers):
    lm = load_classifier("tiny-llama", ("a", "b"), seed=0)
    ds = datasets.Dataset.from_dict({"id": ["validation-0", "validation-1"], "input_ids": [[5, 6, 7], []],
                                     "attention_mask": [[1, 1, 1], []]})
    with pytest.raises(DataError, match="example 'validation-1': no tokens"):
        extract(lm.model, lm.tokenizer, ds, is_decoder=True, progress=False)


def test_train_refuses_a_row_without_tokens_in_one_line_and_leaves_nothing(tmp_path):
    from lorascope.cli.main import app

    rows = "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(4)) + "\u200b\u200b,pos\n"
    write(tmp_path / "train.csv", rows)
    write(tmp_path / "dev.csv", "text,label\nnice,pos\nawful,neg\n")
    task = write(tmp_path / "task.yaml", "name: toy\nfiles: {train: train.csv, validation: dev.csv}\n"
                                         "text_columns: [text]\nlabel_column: label\nlabels: [neg, pos]\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--task", str(task), "--method", "lora", "--model", "tiny-llama",
                                      "--out", str(out), "epochs=1", "max_length=16", "batch_size=4"],
                                catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "example 'train-8'" in lines[0] and "tokenises to no tokens" in lines[0], result.stderr
    assert not out.exists() and not (tmp_path / "run.partial").exists()
