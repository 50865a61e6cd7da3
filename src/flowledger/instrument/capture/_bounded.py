"""The bounded record of a payload: ``capture(value, policy)``, what a node's input and output are recorded as.

``capture`` never raises. It returns the JSON value to record and the size
of its JSON encoding in bytes: the value converted (``_jsonable``), or a
:class:`~._raw_json.RawJSON` when a C encoder took it as it was. Besides
the conversion's markers, two are the capture's own:

- ``truncated``: the encoding was longer than the limit; ``preview`` holds
  the first ``limit`` bytes of the JSON text, cut on a UTF-8 boundary.
  ``original_bytes`` and ``omitted_bytes`` say exactly how much was cut
  when the value was encoded whole. A value far over the limit is converted
  only as far as its preview needs, so its size is not known: its marker
  has ``original_bytes_at_least`` and ``omitted_bytes_at_least`` instead,
  true lower bounds (of the value's redacted encoding), never estimates.
- ``capture_error``: converting the value raised; ``error`` says what.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from flowledger._wire import REDACTED
from flowledger.instrument.capture._jsonable import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    Budget,
    clean_str,
    convert,
    encode,
    marker,
    type_name,
)
from flowledger.instrument.capture._plain_json import PLAIN_ONLY, NotPlainJSON, fast_encode, refuse
from flowledger.instrument.capture._raw_json import RawJSON
from flowledger.instrument.capture._redaction import fragments_of, is_secret, plain_key_cache, verdict_cache

__all__ = ["CapturePolicy", "capture", "cut", "oversized"]

_orjson_dumps: Final = orjson.dumps


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    """How values are captured: the redaction pattern and the size limit."""

    redact: re.Pattern[str] | None
    limit_bytes: int
    verdicts: dict[str, bool] = field(init=False, repr=False, compare=False)
    """Per key seen: whether it looks secret (the cache the hot path reads; hashing a pattern is not free)."""
    plain_keys: set[str] = field(init=False, repr=False, compare=False)
    """The keys seen that do not look secret (a mapping whose keys all are needs no look at each)."""
    fragments: tuple[str, ...] | None = field(init=False, repr=False, compare=False)
    """The literal fragments ``redact`` alternates, when it was built from them."""

    def __post_init__(self) -> None:
        redact = self.redact
        object.__setattr__(self, "verdicts", {} if redact is None else verdict_cache(redact))
        object.__setattr__(self, "plain_keys", set() if redact is None else plain_key_cache(redact))
        object.__setattr__(self, "fragments", None if redact is None else fragments_of(redact))


_SIZED: Final = frozenset((str, bytes, list, dict, tuple))
"""The types whose length ``oversized`` counts."""


def oversized(value: Any, limit: int, redact: re.Pattern[str] | None) -> int:
    """A cheap lower bound of the JSON size of ``value`` (redacted) when it is surely over ``limit``, else 0.

    Looks at the value and one level inside it (lengths only), so a huge
    payload is recognised without walking or encoding all of it. The value
    of a secret-looking key does not count: it is recorded as ``[REDACTED]``.
    """
    kind = type(value)
    if kind is str or kind is bytes:
        return len(value) if len(value) > limit else 0
    if kind is dict or kind is list or kind is tuple:
        total = len(value)
        if total * 2 > limit:
            return total * 2
        for item in value.values() if kind is dict else value:
            if type(item) in _SIZED:
                total += len(item)
                if total > limit:
                    # Rarely reached: count again without the values redaction will replace.
                    return _oversized_redacted(value, limit, redact) if kind is dict and redact else total
    return 0


def _oversized_redacted(value: dict[Any, Any], limit: int, redact: re.Pattern[str]) -> int:
    total = len(value)
    for key, item in value.items():
        if type(key) is str and is_secret(key, redact):
            continue
        inner = type(item)
        if inner is str or inner is bytes or inner is list or inner is dict or inner is tuple:
            total += len(item)
            if total > limit:
                return total
    return 0


def _fast(value: Any, policy: CapturePolicy, levels: int = MAX_DEPTH) -> tuple[RawJSON, int] | None:
    """Plain JSON values take a C encoder: a snapshot in microseconds.

    Secret-looking keys at the top of a mapping are redacted here, before
    encoding (a few cached lookups). Whether a secret-looking key is left
    deeper in is found out later, off the hot path, by whoever first needs
    the payload (:class:`RawJSON`): when none is, the record is final as
    encoded and nobody decodes it; otherwise it is redacted when decoded.

    orjson (about five times faster than ``json`` here) refuses what the full
    conversion must see (other types, lone surrogates, integers past 64 bits,
    cycles, non-string keys) but writes NaN and infinities as ``null``: a
    text holding ``null`` is encoded again by ``json``, which refuses those.

    Nesting is not looked at here: the record checks it against ``levels``
    when first read, off the hot path, and cuts what is deeper then.

    Returns the record and its size in bytes (the size before such a cut),
    or None when the value needs the full conversion (non-JSON types, NaN,
    cycles, lone surrogates, odd keys).
    """
    redact = policy.redact
    hidden: tuple[str, ...] = ()
    if redact is not None and type(value) is dict and not value.keys() <= policy.plain_keys:
        verdicts = policy.verdicts
        for key in value:
            secret = verdicts.get(key)
            if secret is None:
                secret = type(key) is str and is_secret(key, redact)
            if secret:
                hidden += (key,)
        if hidden:
            value = dict(value)  # the caller's mapping is left as it is
            for key in hidden:
                value[key] = REDACTED
    try:
        encoded = _orjson_dumps(value, default=refuse, option=PLAIN_ONLY)
        # find(): cheaper than ``in`` on bytes. orjson (3.12 on) returns its whole 4 KiB buffer, never shrunk:
        # a snapshot kept until the worker writes the event would hold that much memory per payload, so it keeps
        # a copy of the right size.
        has_null = encoded.find(b"null") != -1
        encoded = fast_encode(value).encode("utf-8") if has_null else bytes(memoryview(encoded))
    except (NotPlainJSON, ValueError, TypeError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        return None
    if redact is None:
        return RawJSON(encoded, levels=levels), len(encoded)
    return RawJSON(encoded, redact, probe=True, hidden=hidden, levels=levels), len(encoded)


def capture(value: Any, policy: CapturePolicy, *, nested: int = 0) -> tuple[Any, int]:
    """Return ``(record, encoded_size_bytes)`` for ``value``; never raises.

    The record is a snapshot: later changes to ``value`` do not reach it.
    It is a JSON value, or a :class:`RawJSON` holding the encoded text. A
    payload far over the limit is converted only as far as its preview needs,
    so capture costs about the same for a huge value as for a 4 KiB one.
    The record nests at most ``MAX_DEPTH - nested`` levels: ``nested`` is how
    many levels the caller puts around it inside the event's ``data``.
    """
    levels = MAX_DEPTH - nested
    try:
        kind = type(value)
        if value is None or kind is bool or (kind is int and INT_MIN <= value <= INT_MAX):
            return value, 5
        if kind is RawJSON:
            return value.within(levels), value.nbytes
        at_least = oversized(value, policy.limit_bytes, policy.redact)
        if at_least:
            return _preview(value, policy, at_least, nested)
        fast = _fast(value, policy, levels)
        if fast is not None:
            if fast[1] <= policy.limit_bytes:
                return fast
            text = fast[0].json()  # the preview must be the redacted text (and cut to its levels)
            size = len(text.encode("utf-8"))
            if size <= policy.limit_bytes:
                return fast[0], size
            return cut(text, size, policy.limit_bytes), policy.limit_bytes + 96
        jsonable: Any = convert(value, policy.redact, nested, set())
        text = encode(jsonable)
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except Exception as exc:  # a __repr__, model_dump or property that raises
        failed = marker("capture_error", type=type_name(value), error=clean_str(f"{type(exc).__name__}: {exc}"))
        return failed, 128
    if size <= policy.limit_bytes:
        return jsonable, size
    return cut(text, size, policy.limit_bytes), policy.limit_bytes + 96


def cut(text: str, size: int, limit: int, *, exact: bool = True) -> dict[str, Any]:
    """The ``truncated`` marker: exact sizes, or (``exact=False``) lower bounds named ``*_at_least``."""
    head = text.encode("utf-8")[:limit]
    preview = head.decode("utf-8", "ignore")
    kept = len(preview.encode("utf-8"))
    if exact:
        return marker("truncated", preview=preview, original_bytes=size, omitted_bytes=max(size - kept, 0))
    return marker(
        "truncated", preview=preview, original_bytes_at_least=size, omitted_bytes_at_least=max(size - kept, 0)
    )


def _preview(value: Any, policy: CapturePolicy, at_least: int, nested: int = 0) -> tuple[Any, int]:
    """The record of a value that looked huge, converting only what the preview shows.

    When the bounded conversion left nothing out (redaction shrank the value,
    say), it is the whole value: kept as is if it fits, else cut with its
    exact size. Otherwise the size is known only from below.
    """
    budget = Budget(policy.limit_bytes)
    partial = convert(value, policy.redact, nested, set(), budget)
    text = encode(partial)
    size = len(text.encode("utf-8"))
    if not budget.cut:
        if size <= policy.limit_bytes:
            return partial, size
        return cut(text, size, policy.limit_bytes), policy.limit_bytes + 96
    return cut(text, max(at_least, size), policy.limit_bytes, exact=False), policy.limit_bytes + 96
