"""The store stage: the ``Store`` protocol and its SQLite engine, with the ledger, the fold and the queries."""

from __future__ import annotations

from flowledger.receiver.store._protocol import Drift, EventOutcome, RunPage, RunQuery, Stats, Store, VerifyReport
from flowledger.receiver.store._sqlite import SqliteStore

__all__ = ["Drift", "EventOutcome", "RunPage", "RunQuery", "SqliteStore", "Stats", "Store", "VerifyReport"]
