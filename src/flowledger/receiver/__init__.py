"""The flowledger receiver: ingest, a verifiable ledger on SQLite, projections, query API.

Names are imported lazily, so ``flowledger.receiver._cli`` (and with it the
``flowledger`` command) loads without the server stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowledger.receiver._app import create_app
    from flowledger.receiver._config import Limits, ReceiverConfig, config_from_env
    from flowledger.receiver._sqlite import SqliteStore
    from flowledger.receiver._store import Store

__all__ = ["Limits", "ReceiverConfig", "SqliteStore", "Store", "config_from_env", "create_app"]

_WHERE = {
    "create_app": "flowledger.receiver._app",
    "Limits": "flowledger.receiver._config",
    "ReceiverConfig": "flowledger.receiver._config",
    "config_from_env": "flowledger.receiver._config",
    "SqliteStore": "flowledger.receiver._sqlite",
    "Store": "flowledger.receiver._store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowledger.receiver' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
