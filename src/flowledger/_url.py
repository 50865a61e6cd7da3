"""Endpoint URLs: a path joined onto one, and one shown without its secrets.

An endpoint may carry credentials: ``http://user:password@host`` (httpx sends
them as Basic auth) or a token in the query string (``?token=...``, as some
collectors and proxies take it). Two things follow.

- The SDK posts to paths below an endpoint (``/v1/events``, ``/v1/traces``,
  ``/api/runs/...``), and the receiver forwards OTLP to ``/v1/<signal>`` below
  its upstream's. :func:`join_path` appends the path to the URL's *path*
  and keeps the query after it, as OTel Go's exporter does with its endpoint
  URL. Pasting the path after the whole text, as before, sent
  ``/?token=x/v1/events``: the wrong path, and a corrupt token.
- Every warning, log line and error message that names an endpoint shows
  :func:`masked`: its userinfo and every query value replaced by ``***`` and
  its fragment dropped. Scheme, host, port and path stay: they are what one
  needs to tell which endpoint failed, and they are not secret.

Plain string handling, not :func:`urllib.parse.urlsplit`: a message must be
safe for any text a variable holds, including one that is not a valid URL
(``urlsplit`` raises on some, and reads ``user:pw@host`` without a scheme as
scheme ``user``).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

__all__ = ["MASK", "PORT_MAX", "join_path", "masked", "url_problem", "userinfo_cut_short"]

MASK: Final = "***"
"""What stands in for a secret part of a URL in a message."""
PORT_MAX: Final = 65_535


def join_path(url: str, path: str) -> str:
    """``url`` with ``path`` appended to its path, the query kept after it and the fragment dropped.

    ``join_path("http://h:1/base/?token=t", "/v1/events")`` is ``http://h:1/base/v1/events?token=t``.
    A fragment is never sent, so a path after one would never reach the server.
    """
    text = url.partition("#")[0]
    head, has_query, query = text.partition("?")
    return head.rstrip("/") + "/" + path.lstrip("/") + (has_query + query if query else "")


def userinfo_cut_short(url: str) -> bool:
    """Whether an ``@`` after where ``url``'s host seems to end is most likely a user name or password holding an
    unescaped ``/``, ``?`` or ``#`` (``http://user:pa/ss@host``, ``http://tok#secret@host``): the request would go
    to the wrong host and the start of the secret would be shown as that host. So is an ``@`` in the path or the
    fragment, or one in the query that no ``=`` comes before (``?email=ops@example.com`` is a query's own)."""
    rest = url.partition("://")[2] or url
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i != -1), default=len(rest))
    if "@" in rest[:cut]:
        return False  # the userinfo ends at its own "@": a parser reads the host right
    tail = rest[cut:]
    before_fragment, hash_mark, fragment = tail.partition("#")
    path, _, query = before_fragment.partition("?")
    if "@" in path or (hash_mark and "@" in fragment):
        return True
    return "@" in query and "=" not in query.partition("@")[0]


def masked(url: str) -> str:
    """``url`` safe to print: userinfo and query values replaced by ``***``, the fragment dropped.

    ``http://user:pw@h:1/p?token=t&x`` is shown ``http://***@h:1/p?token=***&***``. A text that is not
    quite a URL is masked too: a password holding an unescaped ``/``, ``?`` or ``#`` can make a parser
    end the host early, so an ``@`` where :func:`userinfo_cut_short` says so, or a port that is not a number,
    hides all of it.
    """
    if userinfo_cut_short(url):  # "http://tok#secret@host": no part of it can be told from the secret
        scheme, has_scheme, _ = url.partition("://")
        return (scheme + has_scheme if has_scheme else "") + MASK
    text = url.partition("#")[0]
    head, has_query, query = text.partition("?")
    scheme, has_scheme, rest = head.partition("://")
    prefix = scheme + has_scheme if has_scheme else ""
    if not has_scheme:
        rest = head
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = MASK + "@" + authority.rpartition("@")[2]
    elif "@" in path:  # "user:pa/ss@host": the userinfo did not end where a parser thinks
        authority, slash, path = MASK + "@" + path.rpartition("@")[2], "", ""
    port = authority.rpartition("@")[2].rpartition("]")[2].partition(":")[2]  # after an IPv6 literal's "]"
    if port and not port.isdigit():  # "user:pa?ss@host" read as host "user", port "pa"
        authority, slash, path = MASK, "", ""
        has_query, query = "", ""
    shown = prefix + authority + slash + path
    if query:
        shown += has_query + "&".join(_masked_pair(pair) for pair in query.split("&"))
    return shown


def _masked_pair(pair: str) -> str:
    """``key=***`` for ``key=value``, ``***`` for a bare part (which may be a token itself)."""
    key, sep, _ = pair.partition("=")
    return f"{key}={MASK}" if sep else MASK


_URL_ACCEPTS: Final = "an http:// or https:// URL"
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def url_problem(url: object) -> str | None:
    """What makes ``url`` unusable as an endpoint, as what it must be (None when it is fine).

    The URL is read as the sender's HTTP client will read it: scheme http or https, a host, a port
    from 1 to 65535, a well-formed IPv6 literal, an internationalised host that encodes. The answer
    never quotes a part of the URL, which may be a password.
    """
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/?#]+\S*$", url, re.IGNORECASE):
        return _URL_ACCEPTS
    if _CONTROL.search(url):  # a request cannot carry one, and httpx's refusal would quote the URL
        return f"{_URL_ACCEPTS} without control characters"
    if userinfo_cut_short(url):
        return f"{_URL_ACCEPTS} whose user name and password percent-encode / ? # @ (%2F %3F %23 %40)"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, say: the message may quote the URL, so it is not shown
        return f"{_URL_ACCEPTS} that parses (a well-formed host; brackets closed around an IPv6 address)"
    host = parts.hostname
    if not re.fullmatch(r"(\[[^\[\]]*\]|[^\[\]:]*)(:[^:]*)?", parts.netloc.rpartition("@")[2]):
        return f"{_URL_ACCEPTS} that parses (a well-formed host; brackets closed around an IPv6 address)"
    if not host:
        return f"{_URL_ACCEPTS} with a host"
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = -1
    if port is not None and not 1 <= port <= PORT_MAX:
        return f"{_URL_ACCEPTS} whose port is a number from 1 to {PORT_MAX}"
    if not host.isascii():
        try:
            host.encode("idna")
        except UnicodeError:
            return f"{_URL_ACCEPTS} whose host is a valid domain name"
    return None
