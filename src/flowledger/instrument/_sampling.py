"""Sampling runs: keep or drop whole runs, never parts, and count what is dropped.

A run is kept with probability ``sample_rate`` (per run ``flowledger.run(...,
sample_rate=)``, per workflow ``FLOWLEDGER_SAMPLE_RATE=orders=0.1,0.5``, or one
rate for all). The draw is made when the run starts, but the decision is final
only when it ends: a run drawn out has its events held in a bounded
:class:`HeldEvents` instead of being sent, and at its end it is kept after all
(its held events sent in order, then its ``run_finished``) when it failed, was
aborted or was slow (it took at least ``sample_slow_s``), or when it outgrew the
buffer. Otherwise its events are dropped and one small ``run_sampled_out``
event counts it for its workflow, so the receiver's statistics stay honest.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import Final

from flowledger._wire import EventKind
from flowledger.instrument._pending import EventData

__all__ = [
    "HELD_EVENTS_MAX",
    "HELD_EVENTS_MAX_BYTES",
    "HeldEvents",
    "draws_out",
    "parse_sample_rates",
    "rate_for",
]

HELD_EVENTS_MAX: Final = 2_000
"""Events a run drawn out may hold; past it the run is kept (its events sent as usual)."""
HELD_EVENTS_MAX_BYTES: Final = 4 * 1024 * 1024
"""Bytes (estimated) a run drawn out may hold; past it the run is kept."""

_random: Final = random.Random()


def parse_sample_rates(text: str) -> tuple[float | None, dict[str, float]]:
    """``"0.2"`` or ``"orders=0.05,billing=1,0.5"``: the default rate (None when not given) and rates per workflow.

    Raises ValueError naming the entry that is not a rate from 0 to 1.
    """
    default: float | None = None
    per_workflow: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.rpartition("=")
        rate = _rate(value.strip(), part)
        if sep:
            if not name.strip():
                raise ValueError(f"entry {part!r} names no workflow: write WORKFLOW=RATE")
            per_workflow[name.strip()] = rate
        else:
            default = rate
    if default is None and not per_workflow:
        raise ValueError("it names no rate")
    return default, per_workflow


def _rate(text: str, entry: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"entry {entry!r} is not a rate from 0 to 1") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"entry {entry!r} is not a rate from 0 to 1")
    return rate


def rate_for(workflow_id: str, given: float | None, default: float, per_workflow: Mapping[str, float]) -> float:
    """The rate of one run: the run's own, else its workflow's, else the default."""
    if given is not None:
        return given
    return per_workflow.get(workflow_id, default)


def draws_out(rate: float) -> bool:
    """Whether a run with this keep rate is drawn out (its events held until it ends)."""
    return rate < 1.0 and _random.random() >= rate


class HeldEvents:
    """The events of a run drawn out, in order: ``(kind, seq, data, size, ts_ns)``; bounded."""

    __slots__ = ("bytes", "events", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[EventKind, int, EventData, int, int]] = []
        self.bytes = 0

    def add(self, kind: EventKind, seq: int, data: EventData, size: int, ts_ns: int) -> bool:
        """Hold one event; False (nothing held) when the buffer is full: the run is then kept."""
        if len(self.events) >= HELD_EVENTS_MAX or self.bytes + size > HELD_EVENTS_MAX_BYTES:
            return False
        self.events.append((kind, seq, data, size, ts_ns))
        self.bytes += size
        return True
