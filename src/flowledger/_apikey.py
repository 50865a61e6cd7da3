"""Checking a secret sent in an HTTP header where it enters flowledger, without ever echoing it.

A key travels as ``Authorization: Bearer <key>``: it must be visible ASCII
with no spaces or line breaks, or the HTTP client refuses the header with a
message that quotes the key. :func:`check_api_key` refuses such a key first,
saying where it came from and which character is wrong, never what the key is.

OTLP headers (``OTEL_EXPORTER_OTLP_HEADERS``, ``configure(otlp_headers=...)``)
often carry a key too (``api-key=...``). :func:`header_problem` holds them to
what the HTTP client sends (httpx encodes header values as ASCII, h11 refuses
control characters and whitespace at either end): otherwise the first export
fails with an error quoting the value (``UnicodeEncodeError('ascii',
'SECRÉT99', ...)``, ``Illegal header value b'SECRET\\nevil'``). Its answer
names the header, never its value.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from flowledger._exceptions import ConfigError

__all__ = ["api_key_problem", "check_api_key", "header_problem"]

_FIRST_VISIBLE: Final = 0x21
_LAST_VISIBLE: Final = 0x7E
_NAMES: Final = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", " ": "a space"}
_TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
"""What an HTTP header name (an RFC 9110 token) is made of."""
_BLANKS: Final = " \t"
"""What a header value may hold besides visible ASCII, between visible characters only."""


def _describe(char: str) -> str:
    if char in _NAMES:
        return _NAMES[char]
    name = unicodedata.name(char, "")
    return f"the character U+{ord(char):04X}" + (f" ({name})" if name else "")


def _first_bad(text: str, blanks: str = "") -> tuple[int, str] | None:
    """The position (from 1) and the first character of ``text`` that is neither visible ASCII nor in ``blanks``."""
    for position, char in enumerate(text, start=1):
        if not (_FIRST_VISIBLE <= ord(char) <= _LAST_VISIBLE or char in blanks):
            return position, char
    return None


def api_key_problem(key: object, *, origin: str) -> str | None:
    """Why ``key`` cannot be sent as a bearer token, naming ``origin`` and never the key; None when it can."""
    if not isinstance(key, str):
        return f"{origin} must be a str, not {type(key).__name__}"
    if not key:
        return f"{origin} is empty; give the API key or leave it unset"
    bad = _first_bad(key)
    if bad is not None:
        position, char = bad
        return (
            f"{origin} holds {_describe(char)} at character {position} of {len(key)}; an API key is "
            "visible ASCII without spaces or line breaks: remove it"
        )
    return None


def header_problem(name: object, value: object, *, origin: str) -> str | None:
    """Why the header ``name: value`` cannot be sent, naming ``origin`` and the header (when its name is one), never
    the value; None when it can be sent."""
    if not isinstance(name, str) or not isinstance(value, str):
        kinds = f"{type(name).__name__}, {type(value).__name__}"
        return f"{origin} must be pairs of str (a header name and its value), not ({kinds})"
    if not name:
        return f"{origin} has a header with an empty name"
    for position, char in enumerate(name, start=1):
        if char not in _TOKEN_CHARS:  # not shown: such a "name" may be a secret pasted without its "name="
            return (
                f"{origin} has a header name holding {_describe(char)} at character {position}; a header name is "
                "letters, digits and !#$%&'*+-.^_`|~ only"
            )
    bad = _first_bad(value, _BLANKS)
    if bad is not None:
        position, char = bad
        return (
            f"{origin} has header {name!r} whose value holds {_describe(char)} at character {position} of "
            f"{len(value)}; a header value is visible ASCII (spaces and tabs between words): remove it"
        )
    if value != value.strip(_BLANKS):
        return f"{origin} has header {name!r} whose value starts or ends with a space or tab: remove it"
    return None


def check_api_key(key: str, *, origin: str) -> str:
    """Return ``key`` when it can be sent as a bearer token; ConfigError naming ``origin`` otherwise.

    The message says which character (by position and kind) is wrong and never contains the key.
    """
    problem = api_key_problem(key, origin=origin)
    if problem is not None:
        raise ConfigError(problem)
    return key
