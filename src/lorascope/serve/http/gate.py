"""ASGI middleware run before any body is read: the bearer token, then the body-size cap.

The token guards every path except the probes (``/healthz``, ``/health``, ``/ready``): the APIs,
``/metrics``, ``/docs`` and ``/openapi.json``, and paths that exist under no route (so a 404 does
not tell a stranger which paths exist).

Checking here rather than in a FastAPI dependency means an unauthenticated or oversized request is
refused before its body is received or parsed (a dependency runs only after FastAPI has read and
decoded the body, so a bad body would answer 422 before the token was even looked at).
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from lorascope.serve.http.errors import ApiError, error_response, openai_path
from lorascope.serve.http.security import check_token

_WITH_BODY = ("POST", "PUT", "PATCH")


class Gate:
    """Refuse requests without the token (401) or with too large / unsized bodies (413 / 411).

    Args:
        app: The wrapped ASGI app.
        token: Required bearer token, or None.
        max_body_bytes: Largest ``Content-Length`` accepted.
        open_paths: Paths served without the token (the probes).
    """

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int, open_paths: Collection[str] = ()) -> None:
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            if scope["path"] not in self.open_paths:
                check_token(headers.get("authorization"), self.token)
            if scope["method"] in _WITH_BODY:
                self._check_length(headers.get("content-length"))
        except ApiError as err:
            response = error_response(err.status, err.code, err.message, err.headers, openai=openai_path(scope["path"]))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check_length(self, length: str | None) -> None:
        # Chunked bodies have no length to check up front; refusing them keeps the cap honest.
        if length is None:
            raise ApiError(411, "length_required", "send a Content-Length header")
        if not length.isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        if int(length) > self.max_body_bytes:
            raise ApiError(413, "body_too_large", f"request body over {self.max_body_bytes} bytes")
