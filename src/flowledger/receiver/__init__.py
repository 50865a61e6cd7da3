"""The flowledger receiver: ingest, a verifiable ledger on SQLite, projections, query API.

One folder per stage of the data flow: ``ingest/`` (``POST /v1/events``),
``store/`` (the ``Store`` protocol every reader and writer goes through, the
SQLite engine, the ledger, the fold, the record declarations), ``otlp/``,
``api/``, ``viewer/`` and ``cli/``; the app is assembled here (``_app.py``).

Names are imported lazily, so ``flowledger.receiver.cli`` (and with it the
``flowledger`` command) loads without the server stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowledger.receiver._app import create_app
    from flowledger.receiver._config import IngestLimits, ReceiverConfig, config_from_env
    from flowledger.receiver.store._protocol import Store
    from flowledger.receiver.store._sqlite import SqliteStore

__all__ = ["IngestLimits", "ReceiverConfig", "SqliteStore", "Store", "config_from_env", "create_app"]

_WHERE = {
    "create_app": "flowledger.receiver._app",
    "IngestLimits": "flowledger.receiver._config",
    "ReceiverConfig": "flowledger.receiver._config",
    "config_from_env": "flowledger.receiver._config",
    "SqliteStore": "flowledger.receiver.store._sqlite",
    "Store": "flowledger.receiver.store._protocol",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowledger.receiver' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
