"""Telling a PostgreSQL URL from a SQLite path, and showing one without its password.

``--db`` and ``FLOWLEDGER_DB`` take either a SQLite file or a
``postgresql://`` URL; this module decides which (without importing the
driver) and checks a URL's shape at the edge, so that a typo is one clear
error naming the option, and the password never reaches a message or a log.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowledger._exceptions import ConfigError

__all__ = ["POSTGRES_SCHEMES", "check_postgres_url", "is_postgres_url", "redacted", "unreadable_url_message"]

POSTGRES_SCHEMES: Final = ("postgresql", "postgres")
"""The URL schemes that select the PostgreSQL engine (libpq's two spellings)."""


def is_postgres_url(target: str) -> bool:
    """Whether ``target`` names a PostgreSQL database (any other text is a SQLite file)."""
    scheme, sep, _ = target.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


_SECRET_PARAMS: Final = frozenset({"password", "sslpassword"})
"""Query parameters libpq reads a secret from (``?password=...``)."""


def redacted(url: str, *, every_query_value: bool = False) -> str:
    """``url`` with its password (in the user part or a ``password`` parameter) replaced by ``***``: safe to print.

    With ``every_query_value`` each query value is replaced (and a fragment dropped): for a receiver's
    HTTP URL, whose query may carry a token in a parameter of any name (``?token=...``), as the SDK
    shows its endpoints. A PostgreSQL URL's other parameters (``sslmode``) stay readable.
    """
    try:
        parts = urlsplit(url)
        if "@" in parts.path:  # a user part cut short by a "/" in its password: the host is in the path
            return url.split("://", 1)[0] + "://***"
        if parts.password is not None:
            user = parts.username or ""
            host = parts.netloc.rsplit("@", 1)[1]
            parts = parts._replace(netloc=f"{user}:***@{host}")
        if every_query_value:
            parts = parts._replace(query=_every_value_hidden(parts.query), fragment="")
        else:
            pairs = parse_qsl(parts.query, keep_blank_values=True)
            if any(key.lower() in _SECRET_PARAMS for key, _ in pairs):
                hidden = [(key, "***" if key.lower() in _SECRET_PARAMS else value) for key, value in pairs]
                parts = parts._replace(query=urlencode(hidden, safe="*"))
        return urlunsplit(parts)
    except ValueError:
        return url.split("://", 1)[0] + "://***"


def _every_value_hidden(query: str) -> str:
    """``key=***`` for each ``key=value`` of ``query``, ``***`` for a bare part (which may be a token itself)."""
    if not query:
        return query
    pairs = (part.partition("=") for part in query.split("&"))
    return "&".join(f"{key}=***" if sep else "***" for key, sep, _ in pairs)


_PERCENT_ENCODING: Final = "percent-encode its special characters (@ as %40, : as %3A, / as %2F, % as %25)"
"""How to write a password (or user name) holding URL delimiters in a URL."""


def unreadable_url_message(shown: str, *, option: str = "--db or FLOWLEDGER_DB") -> str:
    """The error for a URL the driver cannot read, ``shown`` without its password (nor the driver's message,
    which may quote a piece of it)."""
    return (
        f"{option} {shown} cannot be read as a PostgreSQL URL; "
        f"if the password holds a character such as @, : or /, {_PERCENT_ENCODING}"
    )


def check_postgres_url(url: str, *, option: str = "--db") -> str:
    """Return ``url`` when it is a usable PostgreSQL URL; ConfigError naming ``option`` otherwise.

    Checks the shape only (scheme, host or socket, port, database name); whether the server
    answers is found when the store opens. The URL must read the same to this check and to the
    driver: asyncpg ends the user part at its first ``@``, :func:`urllib.parse.urlsplit` at its
    last, so an unescaped ``@`` in a password is refused (it would send a piece of the password as
    the host). No message shows the password, nor a parser's message that may quote it.
    """
    shown = redacted(url)
    try:
        parts = urlsplit(url)
        if parts.netloc.count("@") > 1:
            raise ConfigError(
                f"{option} {shown} has an unescaped @ in its user name or password; in a password, {_PERCENT_ENCODING}"
            )
        hosts = parts.netloc.rpartition("@")[2]
        port = None if "," in hosts else parts.port  # libpq's several hosts (h1:5432,h2:5433): each has its port
    except ValueError:
        raise ConfigError(
            f"{option} {shown} is not a valid PostgreSQL URL: its host or port cannot be read "
            f"(write postgresql://USER:PASSWORD@HOST:PORT/DATABASE); in a password, {_PERCENT_ENCODING}"
        ) from None
    if parts.scheme.lower() not in POSTGRES_SCHEMES:
        raise ConfigError(f"{option} {shown} is not a PostgreSQL URL: it must start with postgresql://")
    if port == 0:
        raise ConfigError(f"{option} {shown} has port 0; give the server's port (5432 by default)")
    if not parts.path.strip("/"):
        raise ConfigError(f"{option} {shown} names no database: write postgresql://USER@HOST[:PORT]/DATABASE")
    return url
