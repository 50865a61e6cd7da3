"""Where a request may come from: the receiver's own names, and not a browser on another site.

A receiver on a developer's machine usually runs without API keys, and any
web page the developer opens can make the browser send it requests. Two
checks close what that page could do, before any route runs:

- **The Host header.** A page whose own name is pointed at 127.0.0.1 after
  it loaded (DNS rebinding) is the same origin as the receiver to the
  browser, and could read and purge everything. Rebinding needs a name, so
  an IP address as ``Host`` is always answered. A receiver listening on a
  loopback address answers to its loopback names (``localhost``, any
  ``*.localhost``, the machine's own host name) and to the names
  ``FLOWLEDGER_RECEIVER_ALLOWED_HOSTS`` adds (a proxy's name, say); other
  names are answered 403. One listening on other interfaces answers to any
  name unless that setting names them (then to those and the loopback
  names).
- **Changes sent by a browser from another site.** A page cannot read the
  receiver's answers (no CORS headers), but a form or a ``text/plain``
  fetch reaches it without asking first and could inject events, purge
  runs or start a resume. A request that changes something (any method but
  GET, HEAD and OPTIONS) is refused with 403 when the browser says it came
  from another site (``Sec-Fetch-Site`` other than ``same-origin`` or
  ``none``) or, from a browser too old to say, when its ``Origin`` is not
  the receiver's own host. The SDK, the command line and OTLP exporters send
  neither header; the viewer's own requests are same-origin.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from typing import Final
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from flowledger.receiver._state import error_response

__all__ = ["ANY_HOST", "LOOPBACK_HOSTS", "OriginGuardMiddleware", "allowed_hosts_for", "host_name"]

ANY_HOST: Final = "*"
"""In the allowed hosts: any name."""
LOOPBACK_HOSTS: Final = ("localhost",)
"""The names a receiver answers to whenever it limits the names (with any ``*.localhost``, the machine's own host
name, and any IP address)."""
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_BROWSER_SAME_SITE: Final = frozenset({"same-origin", "none"})
"""``Sec-Fetch-Site`` values of a request the user made on the receiver's own pages or typed in."""
_SHOWN_MAX: Final = 80


def host_name(host: str) -> str:
    """The name in a ``Host`` header or an address, without its port and IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:4318
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _address(name: str) -> bool:
    """Whether ``name`` (from :func:`host_name`) is an IP address rather than a name."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _loopback(host: str) -> bool:
    name = host_name(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _own_names() -> tuple[str, ...]:
    """The machine's own host name (``/etc/hosts`` often points it at 127.0.0.1; a rebinding page sends its
    own name, never this one)."""
    try:
        name = host_name(socket.gethostname())
    except OSError:
        return ()
    return (name,) if name and not _address(name) else ()


def allowed_hosts_for(listen_host: str, configured: tuple[str, ...] | None) -> tuple[str, ...]:
    """The names a receiver listening on ``listen_host`` answers to, besides any IP address: its loopback names
    and the machine's own name, with the ``configured`` ones, on a loopback address; on another, any name
    unless names are ``configured`` (then those, with the loopback and own names)."""
    if configured is None and not _loopback(listen_host):
        return (ANY_HOST,)
    if configured is not None and ANY_HOST in configured:
        return (ANY_HOST,)
    names = (*LOOPBACK_HOSTS, *_own_names(), *(configured or ()))
    return tuple(dict.fromkeys(host_name(name) for name in names))


def _shown(value: str) -> str:
    value = value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX] + "..."
    return repr(value)


def _same_host(origin: str, host: str) -> bool:
    """Whether the ``Origin`` header names the host and port of the ``Host`` header."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.hostname is None:
        return False
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host_parts = urlsplit(f"//{host}")
    try:
        host_port = host_parts.port
    except ValueError:
        return False
    return parts.hostname == host_parts.hostname and (origin_port or default) == (host_port or default)


class OriginGuardMiddleware:
    """403 for a request to a name the receiver does not answer to, or a change a browser sent from another site."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Collection[str]) -> None:
        self.app = app
        self.any_host = ANY_HOST in allowed_hosts
        self.allowed = frozenset(host_name(h) for h in allowed_hosts if h != ANY_HOST)

    def _answers_to(self, host: str) -> bool:
        name = host_name(host)
        return self.any_host or name in self.allowed or name.endswith(".localhost") or _address(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = fetch_site = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1").strip().lower()
        problem = None
        if host is not None and not self._answers_to(host):
            problem = (
                f"this receiver does not answer to the name {_shown(host_name(host))} (the request's Host header); "
                "if it is this receiver's own name (a proxy in front of it, say), add it to "
                "FLOWLEDGER_RECEIVER_ALLOWED_HOSTS"
            )
        elif scope["method"] not in _SAFE_METHODS:
            if fetch_site is not None:
                if fetch_site not in _BROWSER_SAME_SITE:
                    problem = (
                        f"a browser sent this {scope['method']} from another site (Sec-Fetch-Site: "
                        f"{_shown(fetch_site)}); the receiver takes changes only from its own pages and from "
                        "clients outside a browser"
                    )
            elif origin is not None and (host is None or not _same_host(origin, host)):
                problem = (
                    f"a browser sent this {scope['method']} from another origin ({_shown(origin)}); the receiver "
                    "takes changes only from its own pages and from clients outside a browser"
                )
        if problem is not None:
            await error_response(403, problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)
