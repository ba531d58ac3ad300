"""Every error the API returns has one shape: ``{"error": {"code": ..., "message": ...}}``.

Handlers cover our own :class:`ApiError`, FastAPI's body validation (422), a body that cannot be
decoded at all (invalid UTF-8, JSON nested too deeply: FastAPI says 400, we say 422 like any other
malformed body), Starlette's routing errors (404 unknown path, 405 wrong method), and
:class:`LastResort` turns anything unexpected into a 500, so a client never has to parse a
plain-text or differently shaped error, and the server keeps serving after each, on the same
keep-alive connection.
"""

from __future__ import annotations

import logging

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
                 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    """An error response.

    Args:
        status: HTTP status.
        code: Stable machine-readable code (``unknown_adapter``, ``input_too_long`` ...).
        message: What was wrong, for a person.
        headers: Extra response headers (``WWW-Authenticate`` on 401).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The structured error response; ``message`` is made safe to encode and cut to ``MAX_MESSAGE_CHARS``."""
    # A lone surrogate quoted from the request would make the JSON encoder fail: show it escaped.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _undecodable_body(cause: BaseException | None) -> str:
    """Why FastAPI could not even parse a body (its 400 carries the parser's exception as the cause)."""
    if isinstance(cause, UnicodeDecodeError):
        return f"body is not valid UTF-8 (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "body nests arrays or objects too deeply"
    return "body is not valid JSON"


def _describe(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg')}")
    return "; ".join(parts) or "malformed request body"


def install_handlers(app: FastAPI) -> None:
    """Register the structured-error handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.code, err.message, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe(err))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 400:
            # FastAPI's only 400 is "There was an error parsing the body": a malformed body, 422 by our contract.
            return error_response(422, "invalid_request", _undecodable_body(err.__cause__))
        code = _STATUS_CODES.get(err.status_code, "error")
        message = err.detail if isinstance(err.detail, str) else code
        return error_response(err.status_code, code, message, getattr(err, "headers", None))


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
            response = error_response(500, "internal_error", f"internal error ({type(err).__name__}); see the server log")
            await response(scope, receive, send)
