"""Attributes that never change, captured once per capture policy instead of once per attempt.

A generated workflow's node carries the same attributes on every attempt
(its phase, its definition's SHA-256, its function): capturing them anew
each time (encoding, the secret-key probe) cost every attempt a few
microseconds for the same record. :class:`FixedAttributes` is a read-only
mapping that keeps its captured record for the policy it was captured
under, made final at once (probed and, if need be, redacted), so one
record is shared by every event that carries it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flowledger.instrument.capture import CapturePolicy, RawJSON, capture

__all__ = ["FixedAttributes"]


class FixedAttributes(Mapping[str, Any]):
    """A read-only copy of ``attributes`` whose captured record is kept (see the module's docstring)."""

    __slots__ = ("_items", "_record")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self._items = dict(attributes)
        self._record: tuple[CapturePolicy, Any] | None = None

    def record(self, policy: CapturePolicy) -> Any:
        """The captured record under ``policy``: made on the first call under it, the same object after."""
        kept = self._record
        if kept is not None and kept[0] is policy:
            return kept[1]
        record = capture(self._items, policy)[0]
        if type(record) is RawJSON:
            record.raw()  # final now: no later reader (on any thread) changes it
        self._record = (policy, record)
        return record

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FixedAttributes({self._items!r})"
