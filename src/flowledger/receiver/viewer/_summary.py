"""The viewer's summary cards, cached per filter."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Final

from flowledger._wire import now_ts
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._views import RunFilter

__all__ = ["SUMMARY_CACHE_ENTRIES", "SUMMARY_MAX_AGE_S", "SUMMARY_REUSE_FACTOR", "SUMMARY_SLOW_S", "SummaryCache"]

SUMMARY_MAX_AGE_S: Final = 30.0
"""Summary cards are recomputed at least this often while someone looks at them."""
SUMMARY_REUSE_FACTOR: Final = 10.0
"""Cards that took t seconds to compute are reused for up to 10 t seconds even if runs changed."""
SUMMARY_SLOW_S: Final = 0.2
"""Only cards that took at least this long are reused after the ledger grew; cheaper ones are always current."""
SUMMARY_CACHE_ENTRIES: Final = 32


class SummaryCache:
    """Summary cards per filter, reused while nothing changed, and for a while after a slow computation.

    A card set is recomputed when the ledger grew (or after SUMMARY_MAX_AGE_S,
    since the sweeper marks runs stuck without writing to the ledger), but not
    sooner than SUMMARY_REUSE_FACTOR times as long as it took to compute when
    that was slow (SUMMARY_SLOW_S or more): a summary over a million runs is
    not recomputed on every poll, while a cheap one is always current. One
    computation per filter runs at a time; concurrent requests wait for it.
    """

    def __init__(self, *, max_entries: int = SUMMARY_CACHE_ENTRIES) -> None:
        self._entries: OrderedDict[RunFilter, tuple[int, float, float, dict[str, Any]]] = OrderedDict()
        self._locks: dict[RunFilter, asyncio.Lock] = {}
        self._max_entries = max_entries

    def _fresh(self, key: RunFilter, version: int) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        seen_version, computed_at, cost_s, result = entry
        age_s = time.monotonic() - computed_at
        slow = cost_s >= SUMMARY_SLOW_S
        if (slow and age_s < min(SUMMARY_MAX_AGE_S, cost_s * SUMMARY_REUSE_FACTOR)) or (
            seen_version == version and age_s < SUMMARY_MAX_AGE_S
        ):
            return result
        return None

    async def get(self, store: Store, key: RunFilter) -> dict[str, Any]:
        """The cards for ``key``, computed by ``store`` unless a fresh enough set is kept."""
        version = await store.ledger_size()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            kept = self._fresh(key, version)
            if kept is not None:
                return kept
            started = time.monotonic()
            result = {**await store.run_summary(key), "as_of": now_ts()}
            self._entries[key] = (version, time.monotonic(), time.monotonic() - started, result)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                dropped, _ = self._entries.popitem(last=False)
                self._locks.pop(dropped, None)
            return result
