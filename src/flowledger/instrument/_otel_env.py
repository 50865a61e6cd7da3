"""The standard OpenTelemetry SDK variables, as they apply to the spans flowledger's sender exports.

- ``OTEL_RESOURCE_ATTRIBUTES``: ``key=value,key2=value2``, keys and values
  percent-decoded, merged into the spans' resource. A malformed value is
  discarded whole (the specification says so) and reported once.
- ``OTEL_SDK_DISABLED``: ``true`` (any case) turns the SDK's span export
  off; ``false`` or empty leaves it on; any other value is reported and
  read as false, as the specification asks.
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: which traces' spans
  are exported, by trace id (:func:`trace_kept`), as the OTel SDK's samplers
  decide them.

Settings are read in :mod:`._config`; this module only parses and decides.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import unquote

__all__ = [
    "DEFAULT_TRACES_SAMPLER",
    "SERVICE_NAME_KEY",
    "TracesSampler",
    "UnsupportedSampler",
    "parse_resource_attributes",
    "parse_sdk_disabled",
    "parse_traces_sampler",
    "parse_traces_sampler_ratio",
    "resource_attributes_problem",
    "resource_pairs",
    "sampler_accepts",
    "trace_kept",
]

SERVICE_NAME_KEY: Final = "service.name"
TRACE_ID_LOW_BITS: Final = 64
"""The ratio samplers decide on the low 64 bits of the trace id, as every OTel SDK does."""
_TRACE_ID_LIMIT: Final = 1 << TRACE_ID_LOW_BITS
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


class TracesSampler(enum.StrEnum):
    """The ``OTEL_TRACES_SAMPLER`` values flowledger applies to its exported spans."""

    ALWAYS_ON = "always_on"
    ALWAYS_OFF = "always_off"
    TRACEIDRATIO = "traceidratio"
    PARENTBASED_ALWAYS_ON = "parentbased_always_on"
    PARENTBASED_ALWAYS_OFF = "parentbased_always_off"
    PARENTBASED_TRACEIDRATIO = "parentbased_traceidratio"

    @property
    def takes_ratio(self) -> bool:
        return self in (TracesSampler.TRACEIDRATIO, TracesSampler.PARENTBASED_TRACEIDRATIO)


DEFAULT_TRACES_SAMPLER: Final = TracesSampler.PARENTBASED_ALWAYS_ON
"""The OTel SDK's default sampler: every trace flowledger starts is exported."""
_ACCEPTS: Final = ", ".join(s.value for s in TracesSampler)


class UnsupportedSampler(ValueError):
    """A sampler of the specification (``jaeger_remote``, ``xray``...) that flowledger does not apply."""


def parse_resource_attributes(text: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key2=value2`` as the OTel specification reads it: entries split on ``,``, keys and values
    percent-decoded and stripped. Raises ValueError (the whole value is discarded) for an entry without ``=``,
    an empty key, or a ``%`` that does not start a percent-encoded byte of UTF-8."""
    out: dict[str, str] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep:
            raise ValueError(f"entry {entry.strip()!r} is not key=value")
        decoded_key, decoded_value = _decoded(key.strip()), _decoded(value.strip())
        if not decoded_key:
            raise ValueError(f"entry {entry.strip()!r} has no key")
        out[decoded_key] = decoded_value
    return tuple(out.items())


def _decoded(text: str) -> str:
    if _BAD_PERCENT.search(text):
        raise ValueError(f"{text!r} has a % that is not followed by two hex digits")
    try:
        return unquote(text, errors="strict").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{text!r} percent-encodes bytes that are not UTF-8") from None


def resource_attributes_problem(pairs: object) -> str | None:
    """What makes ``pairs`` unusable as resource attributes (None when fine): string keys and values, keys not empty."""
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Iterable):
        return "resource_attributes must be a mapping of attribute names to strings"
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            return "resource_attributes must be a mapping of attribute names to strings"
        key, value = pair
        if not isinstance(key, str) or not key.strip():
            return f"resource_attributes key {key!r} must be a non-empty string"
        if not isinstance(value, str):
            return f"resource_attributes[{key!r}] must be a string, not {value!r}"
    return None


def resource_pairs(value: object) -> object:
    """``configure(resource_attributes=...)``'s value as pairs: a mapping's items, a string read as
    ``OTEL_RESOURCE_ATTRIBUTES`` is (ValueError when malformed); anything else as given."""
    if isinstance(value, str):
        return parse_resource_attributes(value)
    if isinstance(value, Mapping):
        return tuple(value.items())
    if isinstance(value, list):
        return tuple(tuple(pair) if isinstance(pair, list) else pair for pair in value)
    return value


def parse_sdk_disabled(text: str) -> bool:
    """``OTEL_SDK_DISABLED``: True for ``true`` in any case, False for ``false`` or empty; else ValueError
    (the caller reports it and reads it as false, as the specification asks)."""
    low = text.strip().lower()
    if low == "true":
        return True
    if low in ("false", ""):
        return False
    raise ValueError(text)


def parse_traces_sampler(text: str) -> TracesSampler:
    """``OTEL_TRACES_SAMPLER``: one of :class:`TracesSampler` (any case). Raises :class:`UnsupportedSampler` for
    the specification's other samplers and ValueError for anything else."""
    low = text.strip().lower()
    try:
        return TracesSampler(low)
    except ValueError:
        if low in ("jaeger_remote", "parentbased_jaeger_remote", "xray"):
            raise UnsupportedSampler(low) from None
        raise ValueError(text) from None


def parse_traces_sampler_ratio(text: str) -> float:
    """``OTEL_TRACES_SAMPLER_ARG`` of a ratio sampler: a number from 0 to 1; else ValueError."""
    value = float(text.strip())
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(text)
    return value


def sampler_accepts() -> str:
    """What ``OTEL_TRACES_SAMPLER`` accepts, as a warning says it."""
    return f"one of {_ACCEPTS}"


def trace_kept(sampler: TracesSampler, ratio: float, trace_id: str) -> bool:
    """Whether the sampler exports the spans of the trace ``trace_id`` (32 hex digits).

    ``traceidratio`` keeps a trace when the low 64 bits of its id are below
    ``ratio`` × 2^64, as the OTel SDKs' ``TraceIdRatioBased`` does, so every
    process with the same ratio makes the same choice for one trace, and a
    run's span and its nodes' spans go or stay together. The parent-based
    samplers decide as their root sampler: the spans flowledger exports are
    a run's (the root of the run's spans) and its nodes' (children of it).
    """
    if sampler in (TracesSampler.ALWAYS_ON, TracesSampler.PARENTBASED_ALWAYS_ON):
        return True
    if sampler in (TracesSampler.ALWAYS_OFF, TracesSampler.PARENTBASED_ALWAYS_OFF):
        return False
    try:
        low_bits = int(trace_id[-16:], 16)
    except ValueError:
        return True  # not a trace id: the span builder refuses it anyway
    return low_bits < round(ratio * _TRACE_ID_LIMIT)
