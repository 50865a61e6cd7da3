"""Which mapping keys look secret, and whether JSON text may still hold one.

A key looks secret when the redaction pattern (``Settings.redact_patterns``)
finds a match in it, lowercased with ``-`` read as ``_``. Verdicts are
cached per pattern and key: the hot path reads a dict, not the pattern.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from flowledger._wire import REDACTED
from flowledger.instrument._config import REDACT_FRAGMENTS

__all__ = [
    "fragments_of",
    "is_secret",
    "mentions",
    "plain_key_cache",
    "probe_text",
    "redacting_decoder",
    "verdict_cache",
]

_encode_key: Final = json.JSONEncoder(ensure_ascii=False).encode

_SECRET_KEYS: dict[re.Pattern[str], dict[str, bool]] = {}

_PLAIN_KEYS: dict[re.Pattern[str], set[str]] = {}

_SECRET_CACHE_MAX: Final = 8192


def verdict_cache(redact: re.Pattern[str]) -> dict[str, bool]:
    """Per key seen: whether it looks secret to ``redact`` (shared by every policy with that pattern)."""
    return _SECRET_KEYS.setdefault(redact, {})


def plain_key_cache(redact: re.Pattern[str]) -> set[str]:
    """The keys seen that do not look secret to ``redact``."""
    return _PLAIN_KEYS.setdefault(redact, set())


def is_secret(key: str, redact: re.Pattern[str] | None) -> bool:
    if redact is None:
        return False
    known = _SECRET_KEYS.get(redact)
    if known is None:
        known = _SECRET_KEYS.setdefault(redact, {})
    found = known.get(key)
    if found is None:
        found = redact.search(key.lower().replace("-", "_")) is not None
        plain = _PLAIN_KEYS.setdefault(redact, set())
        if len(known) >= _SECRET_CACHE_MAX:
            known.clear()
            plain.clear()
        known[key] = found
        if not found:
            plain.add(key)
    return found


def probe_text(text: str, hidden: tuple[str, ...]) -> str:
    """``text`` lowercased, ``-`` as ``_``, without the pairs redacted before encoding (they no longer count)."""
    probe = text.lower().replace("-", "_")
    for key in hidden:
        pair = _REDACTED_PAIRS.get(key)
        if pair is None:
            pair = _REDACTED_PAIRS[key] = f"{_encode_key(key)}:{_REDACTED_JSON}".lower().replace("-", "_")
            if len(_REDACTED_PAIRS) > _SECRET_CACHE_MAX:
                _REDACTED_PAIRS.clear()
        probe = probe.replace(pair, "")
    return probe


def fragments_of(redact: re.Pattern[str]) -> tuple[str, ...] | None:
    """The literal fragments ``redact`` alternates, when it was built from them."""
    return REDACT_FRAGMENTS.get(redact)


def mentions(probe: str, redact: re.Pattern[str], fragments: tuple[str, ...] | None) -> bool:
    """Whether lowercased ``probe`` contains a fragment of ``redact``."""
    if fragments is None:
        return redact.search(probe) is not None
    for fragment in fragments:  # noqa: SIM110 - a loop: half the cost of any() over a generator
        if fragment in probe:
            return True
    return False


_REDACTED_JSON: Final = json.dumps(REDACTED)

_REDACTED_PAIRS: dict[str, str] = {}
"""Per secret key, its redacted ``"key":"[REDACTED]"`` pair as it appears in a probe."""

_DECODERS: dict[re.Pattern[str], Callable[[str], Any]] = {}


def redacting_decoder(redact: re.Pattern[str]) -> Callable[[str], Any]:
    """A JSON decoder that redacts secret-looking keys of every object it builds."""
    decoder = _DECODERS.get(redact)
    if decoder is None:
        known = _SECRET_KEYS.setdefault(redact, {})

        def hide(obj: dict[str, Any]) -> dict[str, Any]:
            for key in obj:  # keys repeat: most are one dict lookup in the verdict cache
                secret = known.get(key)
                if secret is None:
                    secret = is_secret(key, redact)
                if secret:
                    obj[key] = REDACTED
            return obj

        decoder = _DECODERS[redact] = json.JSONDecoder(object_hook=hide).decode
    return decoder
