"""The vLLM-compatible API: the requests vLLM's own clients send, and every field of the answers they parse.

Three synthetic adapters (sst2 single texts, mrpc and rte pairs) on the 2-layer random ``tiny-llama``;
probabilities are compared with a separate in-process runtime's softmax for the same adapter and inputs.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import requests
import torch
from fastapi.testclient import TestClient

from lorascope.bench.synthetic import make_synthetic_adapters
from lorascope.models.base_recipe import open_base
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.http import AdapterMeta, ServerSettings, TextEncoder, create_app
from tests.helpers import serving

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = "tiny-llama"
TOKEN = "s3cret"
# The prompts of vLLM's examples/pooling/classify/openai_classification_client.py.
PROMPTS = ["Hello, my name is", "The president of the United States is", "The capital of France is", "The future of AI is"]
PAIRS = [["The firm said profits rose.", "Profits went up."], ["A man plays a guitar.", "Nobody makes music."]]
LABELS = {"sst2": ["negative", "positive"], "mrpc": ["not_equivalent", "equivalent"], "rte": ["entailment", "not_entailment"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Adapters under an allowed root, the base recipe, and a reference runtime for expected answers."""
    root = tmp_path_factory.mktemp("protocol-adapters")
    spec = open_base(BASE, ("negative", "positive"), seed=0)
    sources = make_synthetic_adapters(spec, ["sst2", "mrpc", "rte"], 3, root, r=4, alpha=8, targets=None, seed=1)
    reference = MultiAdapterRuntime.from_folders(spec.load("fp32", "cpu"), {s.name: s.folder for s in sources})
    return root, spec, sources, reference


def make_app(setup, **settings):
    root, spec, sources, _ = setup
    runtime = MultiAdapterRuntime.from_folders(spec.load("fp32", "cpu"), {s.name: s.folder for s in sources})
    meta = {s.name: AdapterMeta(s.label_names, s.task, root=s.name) for s in sources}
    encoder = TextEncoder(spec.tokenizer, spec.is_decoder, max_length=64)
    return create_app(runtime, encoder, ServerSettings(**settings), meta, base_name=BASE)


@pytest.fixture(scope="module")
def client(setup):
    with TestClient(make_app(setup, adapter_roots=[str(setup[0])], max_batch_size=8)) as c:
        yield c


def encoder_of(setup) -> TextEncoder:
    return TextEncoder(setup[1].tokenizer, setup[1].is_decoder, max_length=64)


def expected_probs(setup, adapter: str, inputs) -> np.ndarray:
    """The reference runtime's softmax, one adapter for the whole batch, [rows, n_labels]."""
    encoder = encoder_of(setup)
    batch = encoder.pad(encoder.encode(inputs))
    logits = setup[3].predict_logits(batch.pop("input_ids"), batch.pop("attention_mask"), adapter, mode="merged", **batch)
    return torch.softmax(logits.float(), -1).numpy()


def n_tokens(setup, inputs) -> int:
    return sum(len(row["input_ids"]) for row in encoder_of(setup).encode(inputs))


def check_classification(setup, body: dict, adapter: str, inputs) -> None:
    """Every field of vLLM's ClassificationResponse, and the probabilities against the reference."""
    assert set(body) == {"id", "object", "created", "model", "data", "usage"}
    assert re.fullmatch(r"classify-[0-9a-f]{32}", body["id"]), body["id"]
    assert body["object"] == "list" and body["model"] == adapter
    assert isinstance(body["created"], int) and abs(body["created"] - time.time()) < 120
    expected = expected_probs(setup, adapter, inputs)
    assert len(body["data"]) == len(inputs)
    for i, item in enumerate(body["data"]):
        assert set(item) == {"index", "label", "probs", "num_classes"}
        assert item["index"] == i and item["num_classes"] == len(LABELS[adapter]) == len(item["probs"])
        assert item["label"] == LABELS[adapter][int(np.argmax(item["probs"]))]
        np.testing.assert_allclose(item["probs"], expected[i], atol=1e-5)
    tokens = n_tokens(setup, inputs)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                             "prompt_tokens_details": None}


def assert_openai_error(response, status: int, param: str | None = "any", says: str = "") -> dict:
    """vLLM's ErrorResponse: {"error": {"message", "type", "param", "code"}}, code the HTTP status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error = body["error"]
    assert error["code"] == status and error["message"] and isinstance(error["type"], str)
    if param != "any":
        assert error["param"] == param, error
    assert says in error["message"], error
    return error



def test_vllm_example_classification_client_over_a_real_socket(setup):
    """vLLM's openai_classification_client.py, request for request: requests.post(url + "/classify", json=...)."""
    with serving(make_app(setup)) as url:
        api_url = f"{url}/classify"
        payload = {"model": "sst2", "input": PROMPTS}
        response = requests.post(api_url, headers={"User-Agent": "Test Client"}, json=payload, timeout=30)
        assert response.status_code == 200, response.text
        check_classification(setup, response.json(), "sst2", PROMPTS)


@pytest.mark.parametrize("path", ["/classify", "/v1/classify"])
def test_classify_answers_vllms_shape_on_both_paths(setup, client, path):
    response = client.post(path, headers={"User-Agent": "Test Client"}, json={"model": "sst2", "input": PROMPTS})
    assert response.status_code == 200, response.text
    check_classification(setup, response.json(), "sst2", PROMPTS)
    single = client.post(path, json={"model": "sst2", "input": PROMPTS[0]})
    check_classification(setup, single.json(), "sst2", PROMPTS[:1])


def test_v1_classify_still_serves_the_servers_own_shape(setup, client):
    native = client.post("/v1/classify", json={"adapter": "sst2", "inputs": PROMPTS}).json()
    assert set(native) == {"adapter", "predictions"}
    vllm = client.post("/v1/classify", json={"model": "sst2", "input": PROMPTS}).json()
    np.testing.assert_allclose([list(p["probabilities"].values()) for p in native["predictions"]],
                               [d["probs"] for d in vllm["data"]], atol=1e-6)


def test_pairs_in_classify_are_two_element_lists(setup, client):
    response = client.post("/classify", json={"model": "mrpc", "input": PAIRS})
    assert response.status_code == 200, response.text
    check_classification(setup, response.json(), "mrpc", PAIRS)
    # A flat list of two strings is two single texts, as in vLLM; for a pair adapter that is refused.
    assert_openai_error(client.post("/classify", json={"model": "mrpc", "input": PAIRS[0]}), 422, "input",
                        "input[0]: adapter 'mrpc' (task mrpc) classifies sentence pairs")


def check_scores(setup, body: dict, adapter: str, pairs) -> None:
    assert set(body) == {"id", "object", "created", "model", "data", "usage"}
    assert re.fullmatch(r"score-[0-9a-f]{32}", body["id"]) and body["object"] == "list" and body["model"] == adapter
    expected = expected_probs(setup, adapter, pairs)
    assert [d["index"] for d in body["data"]] == list(range(len(pairs)))
    for item, probs in zip(body["data"], expected):
        assert set(item) == {"index", "object", "score", "label", "probs", "num_classes"} and item["object"] == "score"
        np.testing.assert_allclose(item["probs"], probs, atol=1e-5)
        assert item["score"] == pytest.approx(probs[1], abs=1e-5) and item["num_classes"] == 2
    tokens = n_tokens(setup, pairs)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                             "prompt_tokens_details": None}


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_score_pairs_the_way_vllm_clients_send_them(setup, client, path):
    # vLLM's openai_cross_encoder_score.py: one text_1 against a list of text_2, then equal lists.
    one_to_many = client.post(path, json={"model": "mrpc", "text_1": "What is the capital of Brazil?",
                                          "text_2": ["The capital of Brazil is Brasilia.", "Paris is in France."]})
    assert one_to_many.status_code == 200, one_to_many.text
    check_scores(setup, one_to_many.json(), "mrpc", [["What is the capital of Brazil?", "The capital of Brazil is Brasilia."],
                                                     ["What is the capital of Brazil?", "Paris is in France."]])
    zipped = client.post(path, json={"model": "rte", "text_1": [a for a, _ in PAIRS], "text_2": [b for _, b in PAIRS]})
    check_scores(setup, zipped.json(), "rte", PAIRS)
    newer = client.post(path, json={"model": "mrpc", "queries": PAIRS[0][0], "documents": PAIRS[0][1]})
    check_scores(setup, newer.json(), "mrpc", PAIRS[:1])


def test_score_refuses_what_it_cannot_score(client):
    assert_openai_error(client.post("/score", json={"model": "sst2", "text_1": "a", "text_2": "b"}), 422, "model",
                        "classifies single texts")
    assert_openai_error(client.post("/score", json={"model": "mrpc", "text_1": ["a", "b"], "text_2": ["c", "d", "e"]}),
                        422, "text_1", "text_1 has 2 texts and text_2 3")
    assert_openai_error(client.post("/score", json={"model": "mrpc", "text_1": "a"}), 422, None, "text_1 and text_2")
    assert_openai_error(client.post("/score", json={"model": "mrpc", "text_1": "a", "text_2": ["ok", ""]}), 422, "text_2",
                        "text_2[1]: the text is empty")


def test_models_lists_the_base_and_every_adapter_as_vllm_does(client):
    response = client.get("/v1/models")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"object", "data"} and body["object"] == "list"
    cards = {card["id"]: card for card in body["data"]}
    assert list(cards)[:4] == [BASE, "sst2", "mrpc", "rte"]
    for card in body["data"]:
        assert set(card) == {"id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"}
        assert card["object"] == "model" and card["owned_by"] == "lorascope" and card["permission"] == []
        assert isinstance(card["created"], int) and card["created"] > 0
    assert cards[BASE]["parent"] is None and cards[BASE]["root"] == BASE and cards[BASE]["max_model_len"] == 384
    assert cards["sst2"]["parent"] == BASE and cards["sst2"]["root"] == "sst2"


def test_load_and_unload_lora_adapter_like_vllm_under_the_same_checks(setup, client, tmp_path):
    root = setup[0]
    loaded = client.post("/v1/load_lora_adapter", json={"lora_name": "sst2_v2", "lora_path": "sst2"})
    assert loaded.status_code == 200 and loaded.text == "Success: LoRA adapter 'sst2_v2' added successfully."
    card = next(c for c in client.get("/v1/models").json()["data"] if c["id"] == "sst2_v2")
    assert card["parent"] == BASE and card["root"] == "sst2"  # as the client named it, not the resolved folder
    answer = client.post("/classify", json={"model": "sst2_v2", "input": PROMPTS[:2]})
    np.testing.assert_allclose([d["probs"] for d in answer.json()["data"]], expected_probs(setup, "sst2", PROMPTS[:2]),
                               atol=1e-5)
    assert "sst2_v2" in [a["name"] for a in client.get("/v1/adapters").json()["adapters"]]  # one registry for both APIs
    assert_openai_error(client.post("/v1/load_lora_adapter", json={"lora_name": "sst2_v2", "lora_path": "sst2"}), 409,
                        "lora_name", "already loaded")
    assert_openai_error(client.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": str(tmp_path)}), 403,
                        "lora_path", "outside the allowed adapter roots")
    assert_openai_error(client.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "../x"}), 403, "lora_path")
    assert_openai_error(client.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "missing"}), 404,
                        "lora_path")
    assert_openai_error(client.post("/v1/load_lora_adapter", json={"lora_name": "a/b", "lora_path": "sst2"}), 422,
                        "lora_name")
    assert_openai_error(client.post("/v1/load_lora_adapter", json={"lora_name": BASE, "lora_path": "sst2"}), 409,
                        "lora_name", "base model")
    assert_openai_error(client.post("/v1/load_lora_adapter", json={"lora_name": "x"}), 422, "lora_path")
    unloaded = client.post("/v1/unload_lora_adapter", json={"lora_name": "sst2_v2"})
    assert unloaded.status_code == 200 and unloaded.text == "Success: LoRA adapter 'sst2_v2' removed successfully."
    assert_openai_error(client.post("/v1/unload_lora_adapter", json={"lora_name": "sst2_v2"}), 404, "lora_name",
                        "The lora adapter 'sst2_v2' cannot be found.")
    assert_openai_error(client.post("/classify", json={"model": "sst2_v2", "input": "x"}), 404, "model")
    assert (root / "sst2").is_dir()


def test_loading_is_disabled_without_roots(setup):
    with TestClient(make_app(setup)) as c:
        assert_openai_error(c.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "sst2"}), 403, "lora_path",
                            "disabled")


@pytest.mark.parametrize("path", ["/classify", "/v1/classify"])
@pytest.mark.parametrize(
    "body,status,param,says",
    [
        ({"model": "nope", "input": "x"}, 404, "model", "The model `nope` does not exist."),
        ({"model": "meta-llama/Llama-3.1-8B", "input": "x"}, 404, "model", "does not exist"),
        ({"model": BASE, "input": "x"}, 422, "model", "base model"),
        ({"input": "x"}, 422, "model", "base model"),
        ({"model": "sst2"}, 422, "input", "input: Field required"),
        ({"model": "sst2", "input": []}, 422, "input", "input is empty"),
        ({"model": "sst2", "input": [101, 2023, 102]}, 422, "input", "token ids are not accepted"),
        ({"model": "sst2", "input": [[101, 2023]]}, 422, "input", "token ids are not accepted"),
        ({"model": "sst2", "input": 7}, 422, "input", ""),
        ({"model": "sst2", "input": ["ok", ""]}, 422, "input", "input[1]: the text is empty"),
        ({"model": "sst2", "input": ["x" * 5000]}, 413, "input", "input[0]: longer than"),
        ({"model": "sst2", "input": ["x"] * 9}, 413, "input", "9 inputs"),
        ({"model": "sst2", "input": [["a", "b", "c"]]}, 422, "input", "a pair must be [text_a, text_b]"),
        ({"model": "sst2", "input": "x", "use_activation": False}, 422, "use_activation", "raw logits"),
        ({"model": "sst2", "input": "x", "truncate_prompt_tokens": 3}, 422, "truncate_prompt_tokens", "max_model_len"),
    ],
)
def test_errors_take_vllms_shape_and_are_never_5xx(client, path, body, status, param, says):
    error = assert_openai_error(client.post(path, json=body), status, param, says)
    assert error["type"] == {404: "NotFoundError", 413: "PayloadTooLargeError", 422: "UnprocessableEntityError"}[status]
    assert client.post(path, json={"model": "sst2", "input": "still serving"}).status_code == 200


def test_unknown_fields_are_ignored_as_vllm_does(setup, client):
    body = {"model": "sst2", "input": PROMPTS[:1], "user": "u1", "priority": 0, "request_id": "r", "use_activation": True,
            "truncate_prompt_tokens": -1, "add_special_tokens": True}
    check_classification(setup, client.post("/classify", json=body).json(), "sst2", PROMPTS[:1])


def test_malformed_bodies_on_the_vllm_routes_get_vllms_error_shape(client):
    json_header = {"content-type": "application/json"}
    assert_openai_error(client.post("/classify", content=b'{"model": "sst2", "input": [', headers=json_header), 422, None,
                        "not valid JSON")
    assert_openai_error(client.post("/classify", content=b'{"model": "sst2", "input": ["\xff\xfe"]}', headers=json_header), 422, None, "UTF-8")
    assert_openai_error(client.post("/v1/models"), 405, None)
    assert_openai_error(client.get("/classify"), 405, None)
    assert_openai_error(client.post("/v1/unload_lora_adapter", json={}), 422, "lora_name")
    # /v1/classify keeps the server's own shape unless the body is recognisably vLLM's.
    native = client.post("/v1/classify", content=b"[", headers=json_header).json()
    assert set(native["error"]) == {"code", "message"}


def test_the_token_guards_the_vllm_routes_too(setup):
    with TestClient(make_app(setup, token=TOKEN)) as c:
        for method, path, body in [("post", "/classify", {"model": "sst2", "input": "x"}), ("get", "/v1/models", None),
                                   ("post", "/score", {"model": "mrpc", "text_1": "a", "text_2": "b"}),
                                   ("post", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "y"})]:
            error = assert_openai_error(getattr(c, method)(path, json=body) if body else getattr(c, method)(path), 401)
            assert error["type"] == "AuthenticationError"
        ok = c.post("/classify", json={"model": "sst2", "input": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200


def test_load_test_inputs_follow_the_adapters_shape_not_a_glue_name(glue_dir):
    # A task of the user's own may be named like a GLUE task: its adapter's input shape decides.
    from lorascope.serve.http.loadgen import request_texts

    texts = request_texts({"own": {"task": "sst2", "input": "pair"}, "glue": {"task": "sst2", "input": "single"}},
                          str(glue_dir), per_task=4)
    assert texts["own"] and all(isinstance(x, list) and len(x) == 2 for x in texts["own"])
    assert len(texts["glue"]) == 4 and all(isinstance(x, str) for x in texts["glue"])
