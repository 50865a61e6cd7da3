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

__all__ = ["check_api_key"]

_FIRST_VISIBLE: Final = 0x21
_LAST_VISIBLE: Final = 0x7E
_NAMES: Final = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", " ": "a space"}


def _describe(char: str) -> str:
    if char in _NAMES:
        return _NAMES[char]
    name = unicodedata.name(char, "")
    return f"the character U+{ord(char):04X}" + (f" ({name})" if name else "")


def check_api_key(key: str, *, origin: str) -> str:
    """Return ``key`` when it can be sent as a bearer token; ConfigError naming ``origin`` otherwise.

    The message says which character (by position and kind) is wrong and never contains the key.
    """
    if not key:
        raise ConfigError(f"{origin} is empty; give the API key or leave it unset")
    for position, char in enumerate(key, start=1):
        if not _FIRST_VISIBLE <= ord(char) <= _LAST_VISIBLE:
            raise ConfigError(
                f"{origin} holds {_describe(char)} at character {position} of {len(key)}; an API key is "
                "visible ASCII without spaces or line breaks: remove it"
            )
    return key
