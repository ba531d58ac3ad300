"""Who may call the API, and which folders it may load adapters from.

* Authentication: an optional shared bearer token (``Authorization: Bearer <token>``), compared in
  constant time, on every path except the probes: ``/healthz``, ``/health`` and ``/ready`` stay
  open so a supervisor can probe liveness and readiness without the secret; ``/metrics`` and
  ``/docs`` need it (a Prometheus scrape sends it with ``authorization: {credentials: ...}``).
* Adapter loading at run time (``POST /v1/adapters``, ``POST /v1/load_lora_adapter``) reads folders
  named by the client, so it is
  off unless the operator names *allowed roots* at start-up. A requested path (absolute, or
  relative to a root) is resolved with symlinks followed and must lie inside one of the roots;
  ``..`` and symlinks pointing out of a root are refused. Only PEFT adapter folders (or LoRA run
  folders) load, and only their safetensors weights, which are parsed without executing code: a
  pickled ``adapter_model.bin`` is refused.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from lorascope.serve.http.errors import ApiError


def check_token(header: str | None, token: str | None) -> None:
    """Raise 401 unless ``header`` is ``Bearer <token>`` (no-op when no token is configured)."""
    if token is None:
        return
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


def resolve_under_roots(path: str, roots: list[str]) -> Path:
    """The real folder ``path`` names, if it lies inside one of ``roots``.

    Args:
        path: Absolute path, or a path relative to a root (each root is tried in order).
        roots: Allowed root folders given at start-up.

    Raises:
        ApiError: 403 when loading is disabled or the path leaves every root; 404 when the folder
            does not exist inside a root.
    """
    if not roots:
        raise ApiError(403, "adapter_loading_disabled", "loading adapters at run time is disabled (start the server with --adapter-root)")
    if "\x00" in path or not path.strip():
        raise ApiError(422, "invalid_path", "path must be a non-empty folder path")
    real_roots = [Path(r).expanduser().resolve() for r in roots]
    given = Path(path)
    candidates = [given] if given.is_absolute() else [root / given for root in real_roots]
    inside = False
    for candidate in candidates:
        real = candidate.resolve()  # follows symlinks, collapses '..'
        for root in real_roots:
            if real == root or real.is_relative_to(root):
                inside = True
                if real.is_dir():
                    return real
    if not inside:
        raise ApiError(403, "path_not_allowed", "path is outside the allowed adapter roots")
    raise ApiError(404, "adapter_folder_not_found", f"no folder {path!r} under the allowed adapter roots")
