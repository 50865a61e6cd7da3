"""The wire format shared by the SDK and the receiver (version 1).

A run is told as a sequence of events. Every event is one JSON object::

    {
      "v": 1,                       # wire format version
      "event_id": "0192...-7...",   # UUIDv7 string: unique and time-ordered
      "kind": "node_finished",      # an EventKind
      "run_id": "0192...",          # the run the event belongs to
      "seq": 4,                     # per-run sequence number, from 0
      "ts": "2026-11-22T06:33:22.123456Z",   # RFC 3339 UTC
      "producer_id": "0192...",     # one id per SDK process (new after fork)
      "producer_seq": 17,           # per-producer sequence number, from 0
      "project": null,              # optional project name (API keys bind to it)
      "data": {...}                 # kind-specific fields, see below
    }

The JSON Schema in ``flowledger/schemas/events.v1.schema.json`` is the
normative description; :func:`event_schema` loads it. The data fields of
each kind are listed in ``docs/wire-format.md``.

Node attempts are keyed by ``(run_id, span_id)``: ``node_started`` and
``node_finished`` of one attempt share the ``span_id``. A skipped node has
only a ``node_finished`` event with status ``skipped``.
"""

from __future__ import annotations

import enum
import json
import os
import random
import threading
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

__all__ = [
    "FULL_CAPTURE_MAX_BYTES",
    "NODE_SHA256_ATTRIBUTE",
    "RESUME_APP_PATH",
    "REUSED_FROM_ATTRIBUTE",
    "WIRE_VERSION",
    "AbortReason",
    "CaptureMode",
    "EventKind",
    "LogLevel",
    "NodeStatus",
    "OutputCapture",
    "RunStatus",
    "TriggerType",
    "event_schema",
    "format_datetime",
    "format_ts",
    "new_event_id",
    "now_ts",
    "parse_ts",
]

WIRE_VERSION: Final = 1
"""Version of the event wire format; bumped on any incompatible change."""

MARKER_KEY: Final = "__flowledger__"
"""Key of the object that marks a captured value the SDK could not keep as is."""

REDACTED: Final = "[REDACTED]"
"""What a captured value whose key looks secret is replaced with."""


class EventKind(enum.StrEnum):
    """What an event reports."""

    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    NODE_STARTED = "node_started"
    NODE_FINISHED = "node_finished"
    HEARTBEAT = "heartbeat"
    NODE_LOGS = "node_logs"
    """Log lines a node attempt emitted through Python ``logging`` (stored apart from the narrow rows)."""
    RUN_SAMPLED_OUT = "run_sampled_out"
    """A run dropped by sampling, counted for its workflow (its other events were never sent)."""


class RunStatus(enum.StrEnum):
    """State of a run. ``running`` and ``stuck`` are not terminal."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    STUCK = "stuck"

    @property
    def terminal(self) -> bool:
        """Whether no later event can change this status."""
        return self in _TERMINAL_RUN


_TERMINAL_RUN: Final = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ABORTED})


class NodeStatus(enum.StrEnum):
    """State of one node attempt. Only ``running`` is not terminal."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        """Whether no later event can change this status."""
        return self is not NodeStatus.RUNNING


class AbortReason(enum.StrEnum):
    """Why a run was aborted (``error.reason`` of an aborted run)."""

    DEADLINE = "deadline"
    BUDGET = "budget"
    INTERRUPTED = "interrupted"
    """Stopped from outside: SIGINT (Ctrl-C) to a generated module's run."""


class LogLevel(enum.StrEnum):
    """A log line's level by name; :attr:`number` is Python ``logging``'s number for it."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def number(self) -> int:
        """The level on Python's scale (DEBUG 10 to CRITICAL 50)."""
        return _LEVEL_NUMBERS[self]


_LEVEL_NUMBERS: Final = {
    LogLevel.DEBUG: 10,
    LogLevel.INFO: 20,
    LogLevel.WARNING: 30,
    LogLevel.ERROR: 40,
    LogLevel.CRITICAL: 50,
}


class TriggerType(enum.StrEnum):
    """How a run was started."""

    MANUAL = "manual"
    HTTP = "http"
    SCHEDULE = "schedule"


class CaptureMode(enum.StrEnum):
    """How much of a node's output is recorded (a definition's and the SDK's ``capture``)."""

    PREVIEW = "preview"
    """The default: a redacted preview cut at the capture limit (4 KiB)."""
    FULL = "full"
    """Also the complete output, content-addressed (``output_sha256``), up to :data:`FULL_CAPTURE_MAX_BYTES`."""


class OutputCapture(enum.StrEnum):
    """What became of a full capture (``output_capture``): only ``full`` may be reused by a resume."""

    FULL = "full"
    """The complete output is stored, byte for byte as recorded."""
    REDACTED = "redacted"
    """A key that looks secret was redacted: the stored output is not the real one."""
    UNREPRESENTABLE = "unrepresentable"
    """The output holds values with no JSON form (bytes, objects): it was recorded as markers."""
    TOO_LARGE = "too_large"
    """Its JSON was over :data:`FULL_CAPTURE_MAX_BYTES`: only its hash is recorded."""


NODE_SHA256_ATTRIBUTE: Final = "flowledger.node.sha256"
"""The attempt attribute holding the sha256 of the node's own definition (set by the workflow runtime)."""
REUSED_FROM_ATTRIBUTE: Final = "flowledger.reused_from"
"""The attempt attribute of a node a resume did not run: the run whose recorded output it reused."""

RESUME_APP_PATH: Final = "/_flowledger/resume"
"""The route of a generated http app that resumes one of its runs (``POST {"run_id", "from"}``)."""

FULL_CAPTURE_MAX_BYTES: Final = 1024 * 1024
"""The largest full output (its UTF-8 JSON text) that is stored; past it only the hash and size are kept."""


# --- event ids -----------------------------------------------------------

_id_lock = threading.RLock()  # re-entrant: a signal handler may start a run while the code it stopped makes an id
_last_ms = 0
_counter = 0
_random_bits = random.getrandbits
_id_prefix: tuple[int, str] = (-1, "")
_VARIANT_BITS: Final = 0b10 << 62


def new_event_id() -> str:
    """Return a new UUIDv7 string (RFC 9562), monotonic within the process.

    The 48-bit millisecond timestamp leads, so ids sort by creation time and
    land at the end of a B-tree index; within one millisecond a 12-bit
    counter keeps them ordered; 62 random bits make them unique across
    processes (``random`` is reseeded in a forked child).
    """
    global _last_ms, _counter, _id_prefix
    now_ms = time.time_ns() // 1_000_000
    with _id_lock:
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = _random_bits(10)  # start low in the 12 bits: room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    cached_ms, prefix = _id_prefix  # one tuple: read and written atomically
    if ms != cached_ms:  # the time and version digits, formatted once per millisecond
        h = f"{ms:012x}"
        prefix = f"{h[:8]}-{h[8:]}-7"
        _id_prefix = (ms, prefix)
    tail = "%016x" % (_VARIANT_BITS | _random_bits(62))
    return f"{prefix}{counter:03x}-{tail[:4]}-{tail[4:]}"


def _reset_after_fork() -> None:
    global _id_lock
    _id_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# --- timestamps ----------------------------------------------------------

_ts_cache: tuple[int, str] = (-1, "")


def format_ts(epoch_ns: int) -> str:
    """Format nanoseconds since the epoch as RFC 3339 UTC with microseconds."""
    global _ts_cache
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    cached_second, prefix = _ts_cache  # one tuple: read and written atomically
    if seconds != cached_second:  # the whole seconds formatted once per second
        t = time.gmtime(seconds)  # years before 1000 too with four digits (strftime's %Y does not pad them)
        prefix = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        _ts_cache = (seconds, prefix)
    return f"{prefix}.{ns // 1000:06d}Z"


def now_ts() -> str:
    """The current time, formatted as :func:`format_ts` does."""
    return format_ts(time.time_ns())


_MICROS_LEN: Final = len("2026-01-01T00:00:00.000000")


def format_datetime(value: datetime) -> str:
    """A datetime in the form :func:`format_ts` writes (the year always in four digits); a naive one is taken as
    UTC.

    OverflowError when making it UTC leaves the years 1 to 9999.
    """
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:_MICROS_LEN] + "Z"


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime.

    Raises ValueError when the text is not such a timestamp or has no offset.
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return value.astimezone(UTC)


# --- schema --------------------------------------------------------------


@cache
def event_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of one wire-format event."""
    from importlib import resources  # only when asked: it is slow to import

    text = resources.files("flowledger.schemas").joinpath("events.v1.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
