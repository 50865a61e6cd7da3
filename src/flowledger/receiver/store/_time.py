"""Timestamps as the store keeps them: RFC 3339 UTC with microseconds, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

The form is written by :mod:`flowledger._wire` (``format_ts``, ``format_datetime``); this module is the
receiver's normalisation of what producers send, calling it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from flowledger._wire import format_datetime, format_ts

__all__ = ["epoch_s", "hour_of", "normalize_ts", "same_ts", "ts_from_epoch_s"]

_TS_LEN: Final = len("2026-01-01T00:00:00.000000Z")


def normalize_ts(text: str) -> str:
    """Return an RFC 3339 timestamp as UTC with microseconds.

    ValueError when it names no instant, or one outside the years 1 to 9999
    once made UTC (``0001-01-01T00:00:00+01:00``, ``9999-12-31T23:59:59-01:00``).
    """
    if len(text) == _TS_LEN and text[-1] == "Z" and text[19] == "." and text[10] == "T":
        datetime.fromisoformat(text)  # still check month 13 and the like
        return text
    if text[-1:] == "z":  # RFC 3339 allows a lower-case "t" and "z" (fromisoformat takes the "t" already)
        text = text[:-1] + "Z"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    try:
        return format_datetime(value)
    except OverflowError:
        raise ValueError(f"timestamp {text!r} is outside the years 1 to 9999 in UTC") from None


def same_ts(stored: str, text: str) -> bool:
    """Whether ``stored``, a timestamp as the store wrote it, is the normalisation of ``text``.

    Earlier receivers wrote years before 1000 unpadded, as ``strftime`` does (``500-01-01T…``); a ledger entry
    hashed then still matches. ValueError or TypeError as for :func:`normalize_ts`.
    """
    normal = normalize_ts(text)
    return stored == normal or (normal[0] == "0" and stored == normal.lstrip("0"))


def epoch_s(ts: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp with an offset."""
    return datetime.fromisoformat(ts).timestamp()


def ts_from_epoch_s(seconds: float) -> str:
    """The normalised timestamp of ``seconds`` since the epoch."""
    return format_ts(int(seconds * 1_000_000) * 1_000)


def hour_of(ts: str) -> str:
    """The start of the UTC hour of a normalised timestamp, in the same form (``YYYY-MM-DDTHH:00:00.000000Z``)."""
    return ts[:13] + ":00:00.000000Z"
