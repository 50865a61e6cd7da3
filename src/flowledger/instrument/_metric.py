"""Custom metrics of a node attempt: ``flowledger.metric("provider_cache_hit", 1, provider="openai")``.

An attempt keeps one summary per series (a name and its labels): how many
values it saw, their sum, smallest, largest and last. Its ``node_finished``
carries the summaries, so a node that records a metric in a loop sends one
entry, not one per value. Names, labels and values are checked when
recorded: a misuse raises :class:`~flowledger.UsageError` at the call, with
what to change, rather than vanishing from the record.

The receiver adds the summaries up per workflow, node, name, labels and
hour; the run and the attempt are never labels of their own (a label may
not be called ``run_id``).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from reprlib import repr as _q  # quoted, and cut short: a message never carries a whole value
from typing import Any, Final

from flowledger._exceptions import UsageError

__all__ = [
    "MAX_LABELS",
    "MAX_LABEL_VALUE_CHARS",
    "MAX_SERIES_PER_ATTEMPT",
    "RESERVED_LABELS",
    "AttemptMetrics",
    "check_metric",
]

MAX_LABELS: Final = 8
"""Labels per metric value."""
MAX_LABEL_VALUE_CHARS: Final = 128
"""Characters per label value."""
MAX_SERIES_PER_ATTEMPT: Final = 100
"""Distinct series (name and labels) one node attempt may record."""
MAX_ABS_VALUE: Final = 2.0**53
"""The largest magnitude a value may have (what the wire format bounds numbers to)."""
RESERVED_LABELS: Final = frozenset({"run_id", "span_id", "workflow_id", "node_id", "project", "attempt", "item"})
"""Labels the receiver keys metrics by, or that would make one series per run: refused."""
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_LABEL: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


_LABEL_INT_MAX_BITS: Final = 4 * MAX_LABEL_VALUE_CHARS
"""An int label past this many bits has more digits than a label value holds (it is not printed to find out:
``str()`` of an int past 4300 digits raises)."""


def _label_value(metric: str, key: str, value: Any) -> str:
    """A label's value as the string the wire format keeps; UsageError when it is not one (an int is its digits)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > _LABEL_INT_MAX_BITS:
            raise UsageError(
                f"metric {_q(metric)}: label {_q(key)} is {_shown(value)}, more digits than the "
                f"{MAX_LABEL_VALUE_CHARS} characters a label value holds (a label should take few distinct values)"
            )
        text = str(int(value))  # an int's digits are held to the same length as a string
    elif isinstance(value, str):
        text = value
    else:
        raise UsageError(
            f"metric {_q(metric)}: label {_q(key)} must be a string, an int or a bool, got {type(value).__name__}"
        )
    if len(text) > MAX_LABEL_VALUE_CHARS:
        raise UsageError(
            f"metric {_q(metric)}: label {_q(key)} has {len(text)} characters; keep label values to "
            f"{MAX_LABEL_VALUE_CHARS} (a label should take few distinct values)"
        )
    return text


def _shown(value: float | int) -> str:
    """``value`` for a message: an integer too long to print is described by its size."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def check_metric(name: Any, value: Any, labels: Mapping[str, Any]) -> tuple[SeriesKey, float | int]:
    """The series key and the value of one metric value; UsageError saying what is wrong."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise UsageError(
            f"a metric name must be 1 to 128 letters, digits or '_', not starting with a digit, got {_q(name)}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"metric {_q(name)}: the value must be an int or a float, got {type(value).__name__}")
    if abs(value) > MAX_ABS_VALUE or not math.isfinite(value):  # the magnitude first: an int past a float overflows
        raise UsageError(
            f"metric {_q(name)}: the value must be finite, of magnitude at most 2**53, got {_shown(value)}"
        )
    if len(labels) > MAX_LABELS:
        raise UsageError(f"metric {_q(name)} has {len(labels)} labels; at most {MAX_LABELS} are kept")
    pairs: list[tuple[str, str]] = []
    for key, label in labels.items():
        if _LABEL.fullmatch(key) is None or key.startswith("__"):
            raise UsageError(
                f"metric {_q(name)}: the label name {_q(key)} must be 1 to 64 letters, digits or '_', "
                "not starting with a digit or '__'"
            )
        if key in RESERVED_LABELS:
            raise UsageError(
                f"metric {_q(name)}: {_q(key)} cannot be a label; the receiver keeps each value with its workflow "
                "and node, and a label per run would make one series per run"
            )
        pairs.append((key, _label_value(name, key, label)))
    return (name, tuple(sorted(pairs))), value


class AttemptMetrics:
    """The summaries of one attempt's metrics, by series; thread-safe."""

    __slots__ = ("_lock", "_series")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, list[Any]] = {}
        """key -> [count, sum, min, max, last]."""

    def observe(self, key: SeriesKey, value: float | int) -> None:
        """Add one value to its series; UsageError past :data:`MAX_SERIES_PER_ATTEMPT` series."""
        with self._lock:
            summary = self._series.get(key)
            if summary is None:
                if len(self._series) >= MAX_SERIES_PER_ATTEMPT:
                    raise UsageError(
                        f"metric {_q(key[0])}: a node attempt records at most {MAX_SERIES_PER_ATTEMPT} series "
                        "(names and label sets); use labels that take few distinct values"
                    )
                self._series[key] = [1, value, value, value, value]
                return
            summary[0] += 1
            summary[1] += value
            summary[2] = min(summary[2], value)
            summary[3] = max(summary[3], value)
            summary[4] = value

    def __bool__(self) -> bool:
        return bool(self._series)

    def as_list(self) -> list[dict[str, Any]]:
        """The wire form: ``[{name, labels, count, sum, min, max, value}]`` (``value``: the last one), sorted."""
        with self._lock:
            items = sorted(self._series.items())
        return [
            {
                "name": name,
                "labels": dict(labels),
                "count": count,
                "sum": max(-MAX_ABS_VALUE, min(total, MAX_ABS_VALUE)),  # the wire format's bound
                "min": low,
                "max": high,
                "value": last,
            }
            for (name, labels), (count, total, low, high, last) in items
        ]
