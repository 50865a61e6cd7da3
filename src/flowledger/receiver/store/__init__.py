"""The store stage: the ``Store`` protocol and its SQLite engine, with the ledger, the fold and the queries.

Names are imported lazily, so the record declarations (``store._records``)
load for the CLI without the database driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowledger.receiver.store._protocol import Drift, EventOutcome, RunPage, RunQuery, Stats, Store, VerifyReport
    from flowledger.receiver.store._sqlite import SqliteStore

__all__ = ["Drift", "EventOutcome", "RunPage", "RunQuery", "SqliteStore", "Stats", "Store", "VerifyReport"]

_WHERE = {
    **dict.fromkeys(
        ("Drift", "EventOutcome", "RunPage", "RunQuery", "Stats", "Store", "VerifyReport"),
        "flowledger.receiver.store._protocol",
    ),
    "SqliteStore": "flowledger.receiver.store._sqlite",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowledger.receiver.store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
