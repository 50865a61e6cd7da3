"""The standard OpenTelemetry SDK variables, as they apply to the spans flowledger's sender exports.

- ``OTEL_RESOURCE_ATTRIBUTES``: ``key=value,key2=value2``, keys and values
  percent-decoded, merged into the spans' resource. A malformed value is
  discarded whole (the specification says so) and reported once.
- ``OTEL_SDK_DISABLED``: ``true`` (any case) turns the SDK's span export
  off; ``false`` or empty leaves it on; any other value is reported and
  read as false, as the specification asks.
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: which traces' spans
  are exported, by trace id (:func:`trace_kept`), as the OTel SDK's samplers
  decide them. The parent-based ones follow the sampled flag of a run's
  parent span when it is not flowledger's own (a remote caller's ``traceparent``,
  or a span of the application): a run notes it when it starts
  (:func:`note_parent`), in a bounded map the span sender reads.

Settings are read in :mod:`._config`; this module only parses and decides.
"""

from __future__ import annotations

import enum
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import unquote

__all__ = [
    "DEFAULT_TRACES_SAMPLER",
    "PARENTS_MAX",
    "SERVICE_NAME_KEY",
    "TracesSampler",
    "UnsupportedSampler",
    "keeps_every_trace",
    "note_parent",
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

    @property
    def parent_based(self) -> bool:
        """Whether a parent span's sampled flag decides (the root sampler only without one), as OTel's ParentBased."""
        return self in (
            TracesSampler.PARENTBASED_ALWAYS_ON,
            TracesSampler.PARENTBASED_ALWAYS_OFF,
            TracesSampler.PARENTBASED_TRACEIDRATIO,
        )


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


PARENTS_MAX: Final = 10_000
"""Traces whose parent's sampled flag is remembered (:func:`note_parent`); the least recently used go first."""
_parents: dict[str, bool] = {}
"""Trace id (32 hex digits) -> the sampled flag of the parent of a run in it that is not flowledger's own span."""
_parents_lock = threading.Lock()
_unsampled_noted = False
"""Whether any parent noted was not sampled: until then a sampler whose root keeps everything keeps everything."""


def note_parent(trace_id: str, sampled: bool) -> None:
    """Remember that a run of trace ``trace_id`` started under a parent span that is not flowledger's own (a remote
    caller's, or the application's), sampled or not: the parent-based samplers follow it for that trace's spans.

    Called once per such run when it starts; bounded by ``PARENTS_MAX`` traces.
    """
    global _unsampled_noted
    with _parents_lock:
        _parents.pop(trace_id, None)
        _parents[trace_id] = sampled
        if len(_parents) > PARENTS_MAX:
            del _parents[next(iter(_parents))]
        if not sampled:
            _unsampled_noted = True


def _parent_sampled(trace_id: str) -> bool | None:
    """The sampled flag noted for ``trace_id`` (None when none is), now the most recently used."""
    if not _parents:
        return None
    with _parents_lock:
        sampled = _parents.pop(trace_id, None)
        if sampled is not None:
            _parents[trace_id] = sampled
    return sampled


def keeps_every_trace(sampler: TracesSampler, ratio: float) -> bool:
    """Whether :func:`trace_kept` is true of every trace now (the sender then skips deciding span by span)."""
    root_keeps_all = sampler in (TracesSampler.ALWAYS_ON, TracesSampler.PARENTBASED_ALWAYS_ON) or (
        sampler.takes_ratio and ratio >= 1.0
    )
    return root_keeps_all and not (sampler.parent_based and _unsampled_noted)


def trace_kept(sampler: TracesSampler, ratio: float, trace_id: str) -> bool:
    """Whether the sampler exports the spans of the trace ``trace_id`` (32 hex digits).

    ``traceidratio`` keeps a trace when the low 64 bits of its id are below
    ``ratio`` × 2^64, as the OTel SDKs' ``TraceIdRatioBased`` does, so every
    process with the same ratio makes the same choice for one trace, and a
    run's span and its nodes' spans go or stay together.

    The parent-based samplers decide as OTel's ``ParentBased`` with its
    default delegates: a trace whose run started under a parent span that is
    not flowledger's own (:func:`note_parent`) is kept when that parent was
    sampled and left out when it was not, whatever the root sampler says;
    any other trace is decided by the root sampler (``always_on``,
    ``always_off``, ``traceidratio``). A run's nodes are children of its
    span, so they go or stay with it. A process that continues a run it did
    not start (a distributed executor's worker) has no parent noted for it,
    and decides by the root sampler.
    """
    if sampler.parent_based:
        sampled = _parent_sampled(trace_id)
        if sampled is not None:
            return sampled
    if sampler in (TracesSampler.ALWAYS_ON, TracesSampler.PARENTBASED_ALWAYS_ON):
        return True
    if sampler in (TracesSampler.ALWAYS_OFF, TracesSampler.PARENTBASED_ALWAYS_OFF):
        return False
    try:
        low_bits = int(trace_id[-16:], 16)
    except ValueError:
        return True  # not a trace id: the span builder refuses it anyway
    return low_bits < round(ratio * _TRACE_ID_LIMIT)


def _after_fork_in_child() -> None:
    global _parents_lock
    _parents_lock = threading.Lock()  # the parents noted stay: the child may go on with the parent's runs


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
