"""Checking an API key where it enters flowledger, without ever echoing it.

A key travels as ``Authorization: Bearer <key>``: it must be visible ASCII
with no spaces or line breaks, or the HTTP client refuses the header with a
message that quotes the key. :func:`check_api_key` refuses such a key first,
saying where it came from and which character is wrong, never what the key is.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from flowledger._exceptions import ConfigError

__all__ = ["api_key_problem", "check_api_key"]

_FIRST_VISIBLE: Final = 0x21
_LAST_VISIBLE: Final = 0x7E
_NAMES: Final = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", " ": "a space"}


def _describe(char: str) -> str:
    if char in _NAMES:
        return _NAMES[char]
    name = unicodedata.name(char, "")
    return f"the character U+{ord(char):04X}" + (f" ({name})" if name else "")


def api_key_problem(key: str, *, origin: str) -> str | None:
    """Why ``key`` cannot be sent as a bearer token, naming ``origin`` and never the key; None when it can."""
    if not key:
        return f"{origin} is empty; give the API key or leave it unset"
    for position, char in enumerate(key, start=1):
        if not _FIRST_VISIBLE <= ord(char) <= _LAST_VISIBLE:
            return (
                f"{origin} holds {_describe(char)} at character {position} of {len(key)}; an API key is "
                "visible ASCII without spaces or line breaks: remove it"
            )
    return None


def check_api_key(key: str, *, origin: str) -> str:
    """Return ``key`` when it can be sent as a bearer token; ConfigError naming ``origin`` otherwise.

    The message says which character (by position and kind) is wrong and never contains the key.
    """
    problem = api_key_problem(key, origin=origin)
    if problem is not None:
        raise ConfigError(problem)
    return key
