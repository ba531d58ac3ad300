"""Every error the API returns is JSON, in one of two shapes chosen by the route.

* The server's own routes (``/v1/classify`` with ``{adapter, inputs}``, ``/v1/adapters``, probes):
  ``{"error": {"code": "<stable machine-readable code>", "message": "..."}}``.
* The vLLM-compatible routes (``/classify``, ``/score``, ``/v1/models``, ``/v1/load_lora_adapter``,
  ``/v1/unload_lora_adapter``, and ``/v1/classify`` when its body is ``{model, input}``):
  ``{"error": {"message", "type", "param", "code"}}``, the ``ErrorResponse`` of vLLM's OpenAI-compatible
  server (vLLM >= 0.10; earlier versions put the same four keys at the top level with
  ``"object": "error"``). As in vLLM, ``code`` is the HTTP status as an integer and ``type`` the
  name of the error class (``NotFoundError``, ``BadRequestError`` ...); the names are those the
  ``openai`` Python client raises for each status, and that client reads the nested ``error`` object.

Handlers cover our own :class:`ApiError`, FastAPI's body validation (422), a body that cannot be
decoded at all (invalid UTF-8, JSON nested too deeply: FastAPI says 400, we say 422 like any other
malformed body), Starlette's routing errors (404 unknown path, 405 wrong method), and
:class:`LastResort` turns anything unexpected into a 500, so a client never has to parse a
plain-text or differently shaped error, and the server keeps serving after each, on the same
keep-alive connection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("lorascope.serve.http")

# Messages can quote what a client sent (an unknown field's name, say): bounded, so a huge key
# cannot make a huge error response.
MAX_MESSAGE_CHARS = 500

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 409: "conflict", 411: "length_required", 413: "payload_too_large", 422: "invalid_request",
                 429: "too_many_requests", 500: "internal_error", 503: "unavailable"}

# HTTP status -> the ``type`` of an OpenAI-shaped error: the exception class the openai client raises
# for that status (vLLM uses the same names: BadRequestError, NotFoundError, InternalServerError).
_OPENAI_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError", 404: "NotFoundError",
                 405: "MethodNotAllowedError", 409: "ConflictError", 411: "LengthRequiredError",
                 413: "PayloadTooLargeError", 422: "UnprocessableEntityError", 429: "RateLimitError",
                 500: "InternalServerError", 503: "ServiceUnavailableError"}

# Paths whose errors always take the OpenAI shape. ``/v1/classify`` is not here: it serves both
# request shapes, and a body that is not recognisably ``{model, input}`` keeps the server's own shape.
OPENAI_PATHS = frozenset({"/classify", "/score", "/v1/score", "/v1/models", "/v1/load_lora_adapter",
                          "/v1/unload_lora_adapter"})
# Discriminator tags of /v1/classify's two body shapes (see ``protocol.classify_body_kind``).
NATIVE_TAG, OPENAI_TAG = "native", "openai"


class ApiError(Exception):
    """An error response.

    Args:
        status: HTTP status.
        code: Stable machine-readable code (``unknown_adapter``, ``input_too_long`` ...).
        message: What was wrong, for a person.
        headers: Extra response headers (``WWW-Authenticate`` on 401, ``Retry-After`` on 429 and 503).
        param: The request field at fault (``model``, ``input`` ...), shown in OpenAI-shaped errors.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.param = status, code, message, headers, param


def _safe(message: str) -> str:
    # A lone surrogate quoted from the request would make the JSON encoder fail: show it escaped.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return message


def error_body(status: int, code: str, message: str, *, openai: bool = False, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response in the server's own shape or, with ``openai``, vLLM's."""
    if openai:
        kind = _OPENAI_TYPES.get(status, "ServerError" if status >= 500 else "BadRequestError")
        return {"error": {"message": _safe(message), "type": kind, "param": param, "code": status}}
    return {"error": {"code": code, "message": _safe(message)}}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None, *,
                   openai: bool = False, param: str | None = None) -> JSONResponse:
    """The structured error response; ``message`` is made safe to encode and cut to ``MAX_MESSAGE_CHARS``."""
    body = error_body(status, code, message, openai=openai, param=param)
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def openai_path(path: str) -> bool:
    """Whether errors on ``path`` always take the OpenAI shape."""
    return path in OPENAI_PATHS


def wants_openai(request: Request) -> bool:
    """Whether this request's errors take the OpenAI shape: by path, or because its handler said so.

    ``/v1/classify`` learns the shape from the body; its handler records it in the request state,
    which the exception handlers see because Starlette keeps it in the ASGI scope.
    """
    return openai_path(request.url.path) or bool(getattr(request.state, "openai_errors", False))


def _undecodable_body(cause: BaseException | None) -> str:
    """Why FastAPI could not even parse a body (its 400 carries the parser's exception as the cause)."""
    if isinstance(cause, UnicodeDecodeError):
        return f"body is not valid UTF-8 (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "body nests arrays or objects too deeply"
    return "body is not valid JSON"


def _location(loc: tuple[int | str, ...]) -> list[str]:
    """An error location without ``body`` and without the tag of the union member that was tried."""
    parts = [str(p) for p in loc if p != "body"]
    if parts and parts[0] in (NATIVE_TAG, OPENAI_TAG):
        parts = parts[1:]
    return parts


def _describe(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        if e.get("type") == "json_invalid":  # FastAPI reports a JSON syntax error at ("body", <offset>)
            parts.append("body is not valid JSON")
            continue
        where = ".".join(_location(e.get("loc", ()))) or "body"
        message = str(e.get("msg", "")).removeprefix("Value error, ")  # pydantic's prefix for a validator's ValueError
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "malformed request body"


def _validation_param(err: RequestValidationError) -> str | None:
    """The top-level field of the first validation error (``input``, ``model`` ...), if any."""
    for e in err.errors():
        parts = _location(e.get("loc", ()))
        if parts and e.get("type") != "json_invalid":
            return parts[0]
    return None


def _openai_validation(request: Request, err: RequestValidationError) -> bool:
    if wants_openai(request):
        return True
    # /v1/classify: the discriminator tried the {model, input} member.
    return any(len(e.get("loc", ())) > 1 and e["loc"][1] == OPENAI_TAG for e in err.errors())


def install_handlers(app: FastAPI) -> None:
    """Register the structured-error handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.code, err.message, err.headers, openai=wants_openai(request), param=err.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        openai = _openai_validation(request, err)
        return error_response(422, "invalid_request", _describe(err), openai=openai,
                              param=_validation_param(err) if openai else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        openai = wants_openai(request)
        if err.status_code == 400:
            # FastAPI's only 400 is "There was an error parsing the body": a malformed body, 422 by our contract.
            return error_response(422, "invalid_request", _undecodable_body(err.__cause__), openai=openai)
        code = _STATUS_CODES.get(err.status_code, "error")
        message = err.detail if isinstance(err.detail, str) else code
        return error_response(err.status_code, code, message, getattr(err, "headers", None), openai=openai)


class LastResort:
    """Outermost ASGI middleware: an unexpected exception becomes a structured 500, and is not re-raised.

    Starlette's own catch-all (``ServerErrorMiddleware``) answers 500 but then re-raises, and uvicorn
    closes the connection on any exception that leaves the app, so the client's next request on that
    keep-alive connection was reset. Here the exception is logged and answered, and the connection
    stays usable. An exception after the response has started cannot be answered: it is re-raised.

    Args:
        app: The wrapped ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as err:
            log.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            openai = openai_path(scope.get("path", "")) or bool(scope.get("state", {}).get("openai_errors"))
            response = error_response(500, "internal_error", f"internal error ({type(err).__name__}); see the server log",
                                      openai=openai)
            await response(scope, receive, send)
