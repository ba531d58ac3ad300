"""Which endpoint URLs the benchmark measures: loopback hosts, others only when allowed (no heavy imports)."""

from __future__ import annotations

import ipaddress
import urllib.parse


def url_problem(url: str, allow_remote: bool) -> str | None:
    """Why ``url`` cannot be benchmarked (None when it can).

    Args:
        url: Base URL, e.g. ``http://127.0.0.1:8000`` (a path prefix is kept, a query is not allowed).
        allow_remote: Accept hosts other than loopback (``localhost``, 127.0.0.0/8, ``::1``).
    """
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as err:
        return f"not a URL ({err})"
    if parsed.scheme not in ("http", "https"):
        return "use http:// or https://"
    if not parsed.hostname:
        return "no host"
    if parsed.query or parsed.fragment:
        return "give the server's base URL, without a query or fragment"
    if not allow_remote and not is_loopback(parsed.hostname):
        return ("only loopback hosts (localhost, 127.0.0.1, ::1) are benchmarked by default; set allow_remote "
                "(--allow-remote) to measure a server on another machine")
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, without brackets) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
