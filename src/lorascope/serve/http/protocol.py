"""The vLLM-compatible API: the requests vLLM's (and SGLang's) clients already send, and the answers they parse.

Routes (token-protected like the rest when a token is set):

* ``POST /classify`` and ``POST /v1/classify``: ``{"model": <adapter>, "input": str | [str | [a, b], ...]}``
  -> ``{"id": "classify-<hex>", "object": "list", "created", "model", "data": [{"index", "label",
  "probs", "num_classes"}], "usage": {"prompt_tokens", "total_tokens", "completion_tokens": 0,
  "prompt_tokens_details": null}}``: vLLM's ``ClassificationResponse``, which SGLang's ``/v1/classify``
  copies. ``label`` is the adapter's class name, ``probs`` the softmax in label order. An item of
  ``input`` that is itself a list ``[text_a, text_b]`` is a sentence pair: a lorascope extension
  (vLLM's ``input`` takes texts or token ids, never pairs; a list of strings stays a batch of
  single texts, as in vLLM).
* ``POST /score`` and ``POST /v1/score``: vLLM's cross-encoder API, the way vLLM clients send pairs:
  ``{"model", "text_1", "text_2"}`` (or ``queries``/``documents``, ``queries``/``items``,
  ``data_1``/``data_2``), each side a text or a list; one ``text_1`` pairs with every ``text_2``,
  equal lists pair up in order. Answers vLLM's ``ScoreResponse`` (``data: [{"index", "object":
  "score", "score"}]``) where ``score`` is the probability of label 1 of a two-label pair
  classifier, each item carrying ``label``, ``probs`` and ``num_classes`` as well.
* ``GET /v1/models``: the base model and every loaded adapter, as vLLM lists a base and its LoRA
  adapters (``parent`` of an adapter = the base's id, ``root`` = its folder as given).
* ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}`` and ``POST /v1/unload_lora_adapter``
  ``{"lora_name"}``: vLLM's run-time adapter endpoints, answering its plain-text ``Success: ...``;
  the same root-folder and base checks as ``POST /v1/adapters``.

As vLLM does, request fields these routes do not know are ignored (clients send ``user``,
``priority`` ...); fields that would change the answer and cannot be honoured (``use_activation:
false`` asks for raw logits) are refused rather than ignored. Errors take vLLM's shape (see
:mod:`lorascope.serve.http.errors`).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from lorascope.serve.http.adapter_meta import AdapterMeta
from lorascope.serve.http.errors import NATIVE_TAG, OPENAI_TAG, ApiError
from lorascope.serve.http.inputs import check_text
from lorascope.serve.http.schemas import ClassifyRequest
from lorascope.serve.http.service import Classified, Service
from lorascope.serve.sources import NAME_PATTERN

# Error codes about the inputs, reported with param "input" (or the score field at fault).
_INPUT_CODES = frozenset({"too_many_inputs", "input_too_long", "invalid_input", "empty_input", "invalid_text"})


class _Lenient(BaseModel):
    # vLLM's request models ignore fields they do not know (OpenAIBaseModel, extra="allow"), and its
    # clients rely on that; the server's own routes forbid unknown fields instead.
    model_config = ConfigDict(extra="ignore")


class _PoolingOptions(_Lenient):
    """vLLM's pooling options that would change the answer; refused unless they ask for what is served anyway."""

    user: str | None = Field(None, description="ignored (accepted for compatibility)")
    truncate_prompt_tokens: int | None = Field(
        None, description="-1 or at least max_model_len: texts are always truncated to max_model_len tokens")
    use_activation: bool | None = Field(None, description="true or omitted: probabilities are served, never raw logits")
    softmax: bool | None = Field(None, description="deprecated vLLM alias of use_activation")
    activation: bool | None = Field(None, description="deprecated vLLM alias of use_activation")


def _only_text(value: Any) -> Any:
    """Refuse what vLLM accepts but this server cannot serve (token ids), in words a client can act on."""
    if isinstance(value, list):
        flat = [x for item in value for x in (item if isinstance(item, list) else [item])]
        if flat and all(isinstance(x, int) and not isinstance(x, bool) for x in flat):
            raise ValueError("token ids are not accepted; send text")
    return value


class OpenAIClassifyRequest(_PoolingOptions):
    """``POST /classify``: vLLM's classification request."""

    model: str | None = Field(None, description="adapter to classify with (GET /v1/models lists them)")
    input: str | list[str | list[str]] = Field(
        description="a text, or a list of texts; a list item [text_a, text_b] is a sentence pair (lorascope extension)")

    @field_validator("input", mode="before")
    @classmethod
    def _text_input(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("input is empty: send a text or a list of texts")
        return _only_text(value)


# The four ways vLLM's ScoreRequest names its two sides.
_SCORE_FORMS = (("text_1", "text_2"), ("queries", "documents"), ("queries", "items"), ("data_1", "data_2"))
ScoreSide = str | list[str]


class ScoreRequest(_PoolingOptions):
    """``POST /score``: vLLM's score request, pairs of texts for a sentence-pair adapter."""

    model: str | None = Field(None, description="a sentence-pair adapter with two labels")
    text_1: ScoreSide | None = Field(None, description="first text(s): one, or as many as text_2")
    text_2: ScoreSide | None = Field(None, description="second text(s)")
    queries: ScoreSide | None = Field(None, description="newer vLLM name of the first side")
    documents: ScoreSide | None = Field(None, description="newer vLLM name of the second side")
    items: ScoreSide | None = Field(None, description="another vLLM name of the second side")
    data_1: ScoreSide | None = Field(None, description="another vLLM name of the first side")
    data_2: ScoreSide | None = Field(None, description="another vLLM name of the second side")

    @field_validator("text_1", "text_2", "queries", "documents", "items", "data_1", "data_2", mode="before")
    @classmethod
    def _text_side(cls, value: Any) -> Any:
        return _only_text(value)

    @model_validator(mode="after")
    def _one_form(self) -> ScoreRequest:
        given = [f for f in _SCORE_FORMS if getattr(self, f[0]) is not None and getattr(self, f[1]) is not None]
        if len(given) != 1 or sum(getattr(self, n) is not None for n in {n for f in _SCORE_FORMS for n in f}) != 2:
            raise ValueError("give the two sides as text_1 and text_2 (or queries and documents)")
        return self

    def sides(self) -> tuple[str, list[str], str, list[str]]:
        """(first field, its texts, second field, its texts)."""
        first, second = next(f for f in _SCORE_FORMS if getattr(self, f[0]) is not None and getattr(self, f[1]) is not None)

        def as_list(v: ScoreSide) -> list[str]:
            return [v] if isinstance(v, str) else list(v)

        return first, as_list(getattr(self, first)), second, as_list(getattr(self, second))


def classify_body_kind(value: Any) -> str:
    """Which request ``POST /v1/classify`` got: the server's own ``{adapter, inputs}`` or vLLM's ``{model, input}``.

    Anything not recognisably vLLM's is treated as the server's own, so its errors keep the shape
    (and messages) that clients of that route already handle.
    """
    if isinstance(value, OpenAIClassifyRequest):
        return OPENAI_TAG
    if isinstance(value, dict) and "adapter" not in value and "inputs" not in value and ("model" in value or "input" in value):
        return OPENAI_TAG
    return NATIVE_TAG


ClassifyBody = Annotated[
    Annotated[ClassifyRequest, Tag(NATIVE_TAG)] | Annotated[OpenAIClassifyRequest, Tag(OPENAI_TAG)],
    Discriminator(classify_body_kind),
]


class UsageInfo(BaseModel):
    """Tokens read (vLLM's ``UsageInfo``; classification generates none)."""

    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None


class ClassificationData(BaseModel):
    """One input's classification."""

    index: int = Field(description="position in input")
    label: str = Field(description="the most probable class name")
    probs: list[float] = Field(description="softmax probability of every class, in label order")
    num_classes: int


class ClassificationResponse(BaseModel):
    """vLLM's (and SGLang's) classification response."""

    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ClassificationData]
    usage: UsageInfo


class ScoreData(BaseModel):
    """One pair's score (vLLM's ``ScoreResponseData``), with its classification."""

    index: int
    object: Literal["score"] = "score"
    score: float = Field(description="probability of label 1")
    label: str
    probs: list[float]
    num_classes: int


class ScoreResponse(BaseModel):
    """vLLM's score response."""

    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: UsageInfo


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models`` (vLLM's ``ModelCard``)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lorascope"
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None
    permission: list[dict[str, Any]] = Field(default_factory=list)


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class LoadLoRAAdapterRequest(_Lenient):
    """``POST /v1/load_lora_adapter``."""

    lora_name: str = Field(description="name to serve it under: 1-64 letters, digits, '_' or '-'")
    lora_path: str = Field(description="PEFT adapter (or LoRA run) folder, absolute or relative to an allowed root")


class UnloadLoRAAdapterRequest(_Lenient):
    """``POST /v1/unload_lora_adapter``."""

    lora_name: str
    lora_int_id: int | None = Field(None, description="ignored (vLLM's internal id)")


class OpenAIErrorInfo(BaseModel):
    """The ``error`` object of a vLLM-compatible route's error response."""

    message: str
    type: str = Field(description="error class, e.g. NotFoundError")
    param: str | None = Field(None, description="the request field at fault, when one is")
    code: int = Field(description="the HTTP status")


class OpenAIErrorResponse(BaseModel):
    """Errors of the vLLM-compatible routes."""

    error: OpenAIErrorInfo


OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorResponse} for code in (401, 404, 413, 422, 429, 503)
}


def _refuse_unsupported(body: _PoolingOptions, max_length: int) -> None:
    for name in ("use_activation", "softmax", "activation"):
        if getattr(body, name) is False:
            raise ApiError(422, "unsupported", f"{name}=false asks for raw logits; this server serves probabilities only",
                           param=name)
    cut = body.truncate_prompt_tokens
    if cut is not None and cut != -1 and cut < max_length:
        raise ApiError(422, "unsupported", f"truncate_prompt_tokens={cut}: texts are truncated to max_model_len "
                                           f"({max_length}) tokens; send -1 or at least {max_length}",
                       param="truncate_prompt_tokens")


def resolve_model(service: Service, model: str | None) -> tuple[str, AdapterMeta]:
    """The adapter a request's ``model`` names, or a 404 / 422 saying which models there are."""
    engine = service.ready_engine()
    meta = engine.adapters.get(model) if model is not None else None
    if model is not None and meta is not None:
        return model, meta
    names = ", ".join(engine.adapters) or "none loaded"
    if model is None or model == service.base_id:
        raise ApiError(422, "base_model_has_no_head", f"'{service.base_id}' is the base model, which has no trained "
                                                     f"classification head: name one of its adapters ({names})",
                       param="model")
    raise ApiError(404, "unknown_model", f"The model `{model}` does not exist.", param="model")


def _with_param(err: ApiError, param: str) -> ApiError:
    if err.param is None and err.code in _INPUT_CODES:
        err.param = param
    return err


def _usage(result: Classified) -> UsageInfo:
    return UsageInfo(prompt_tokens=result.tokens, total_tokens=result.tokens)


async def openai_classify(service: Service, body: OpenAIClassifyRequest, request: Request) -> ClassificationResponse:
    """Answer a vLLM classification request."""
    request.state.openai_errors = True
    _refuse_unsupported(body, service.settings.max_length)
    name, meta = resolve_model(service, body.model)
    inputs: list[str | list[str]] = [body.input] if isinstance(body.input, str) else list(body.input)
    try:
        result = await service.classify(name, meta, inputs, field="input")
    except ApiError as err:
        raise _with_param(err, "input") from None
    data = [ClassificationData(index=i, label=result.labels[int(p.argmax())], probs=[float(v) for v in p],
                               num_classes=len(p)) for i, p in enumerate(result.probs)]
    return ClassificationResponse(id=f"classify-{uuid.uuid4().hex}", created=int(time.time()), model=name, data=data,
                                  usage=_usage(result))


async def openai_score(service: Service, body: ScoreRequest) -> ScoreResponse:
    """Answer a vLLM score request: each pair's probability of label 1."""
    _refuse_unsupported(body, service.settings.max_length)
    name, meta = resolve_model(service, body.model)
    if meta.takes_pairs is False:
        raise ApiError(422, "invalid_input", f"adapter '{name}' classifies single texts, not pairs: use /classify",
                       param="model")
    if len(meta.labels) != 2:
        raise ApiError(422, "invalid_input", f"adapter '{name}' has {len(meta.labels)} labels; a score is the "
                                             "probability of label 1 of a two-label classifier: use /classify",
                       param="model")
    first, a, second, b = body.sides()
    if not a or not b:
        raise ApiError(422, "empty_input", f"{first if not a else second} is empty", param=first if not a else second)
    if len(a) != 1 and len(a) != len(b):
        raise ApiError(422, "invalid_input", f"{first} has {len(a)} texts and {second} {len(b)}: give one {first}, "
                                             f"or as many as {second}", param=first)
    limit = service.settings.max_input_chars
    for field, texts in ((first, a), (second, b)):
        for i, text in enumerate(texts):
            try:
                check_text(f"{field}[{i}]", text, limit)
            except ApiError as err:
                raise _with_param(err, field) from None
    pairs: list[str | list[str]] = [[a[0] if len(a) == 1 else a[i], text] for i, text in enumerate(b)]
    try:
        result = await service.classify(name, meta, pairs, field="pairs")
    except ApiError as err:
        raise _with_param(err, second) from None
    data = [ScoreData(index=i, score=float(p[1]), label=result.labels[int(p.argmax())], probs=[float(v) for v in p],
                      num_classes=len(p)) for i, p in enumerate(result.probs)]
    return ScoreResponse(id=f"score-{uuid.uuid4().hex}", created=int(time.time()), model=name, data=data,
                         usage=_usage(result))


def model_list(service: Service) -> ModelList:
    """The base model's card, then one per loaded adapter (as vLLM lists a base and its LoRA adapters)."""
    engine = service.ready_engine()
    cards = [ModelCard(id=service.base_id, created=service.lifecycle.started, root=service.base_root,
                       max_model_len=service.settings.max_length)]
    cards += [ModelCard(id=name, created=meta.created, root=meta.root, parent=service.base_id)
              for name, meta in engine.adapters.items()]
    return ModelList(data=cards)


def router(service: Service) -> APIRouter:
    """The vLLM-compatible routes except ``/v1/classify`` (which :mod:`~lorascope.serve.http.app` shares)."""
    api = APIRouter(tags=["vLLM-compatible"])

    @api.post("/classify", response_model=ClassificationResponse, responses=OPENAI_ERRORS)
    async def classify(body: OpenAIClassifyRequest, request: Request) -> ClassificationResponse:
        """Classify texts (or [text_a, text_b] pairs) with an adapter: vLLM's classification API."""
        return await openai_classify(service, body, request)

    async def score(body: ScoreRequest) -> ScoreResponse:
        """Score sentence pairs with a two-label pair adapter: vLLM's score API (cross-encoder style)."""
        return await openai_score(service, body)

    for path in ("/score", "/v1/score"):
        api.add_api_route(path, score, methods=["POST"], response_model=ScoreResponse, responses=OPENAI_ERRORS)

    @api.get("/v1/models", response_model=ModelList, responses=OPENAI_ERRORS)
    async def models() -> ModelList:
        """The base model and every loaded adapter."""
        return model_list(service)

    @api.post("/v1/load_lora_adapter", response_class=PlainTextResponse,
              responses={403: {"model": OpenAIErrorResponse}, 409: {"model": OpenAIErrorResponse}, **OPENAI_ERRORS})
    async def load_lora_adapter(body: LoadLoRAAdapterRequest) -> PlainTextResponse:
        """Load an adapter folder from under an allowed root (vLLM's run-time LoRA loading)."""
        if not NAME_PATTERN.fullmatch(body.lora_name):
            raise ApiError(422, "invalid_adapter_name", "lora_name: 1 to 64 letters, digits, '_' or '-'", param="lora_name")
        try:
            await service.load(body.lora_name, body.lora_path)
        except ApiError as err:
            err.param = err.param or ("lora_name" if err.status == 409 else "lora_path" if err.status != 503 else None)
            raise
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    @api.post("/v1/unload_lora_adapter", response_class=PlainTextResponse, responses=OPENAI_ERRORS)
    async def unload_lora_adapter(body: UnloadLoRAAdapterRequest) -> PlainTextResponse:
        """Unload an adapter; requests for it still queued get 404."""
        name = body.lora_name
        if not NAME_PATTERN.fullmatch(name) or name not in service.ready_engine().adapters:
            raise ApiError(404, "unknown_adapter", f"The lora adapter '{name}' cannot be found.", param="lora_name")
        try:
            await service.unload(name)
        except ApiError as err:
            err.param = err.param or ("lora_name" if err.status == 404 else None)
            raise
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    return api
