"""Every error the API returns has one shape: ``{"error": {"code": ..., "message": ...}}``.

Handlers cover our own :class:`ApiError`, FastAPI's body validation (422), Starlette's routing
errors (404 unknown path, 405 wrong method) and anything unexpected (500), so a client never has
to parse a plain-text or differently shaped error, and the server keeps serving after each.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("lorascope.server")

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
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


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
        code = _STATUS_CODES.get(err.status_code, "error")
        message = err.detail if isinstance(err.detail, str) else code
        return error_response(err.status_code, code, message, getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(err).__name__}); see the server log")
