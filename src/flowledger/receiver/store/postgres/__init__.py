"""The PostgreSQL engine: many receivers sharing one database (the ``postgres`` extra installs its driver).

Only :func:`is_postgres_url` and :func:`check_postgres_url` load without the
driver; :class:`PostgresStore` imports asyncpg when first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowledger.receiver.store.postgres._url import check_postgres_url, is_postgres_url, redacted

if TYPE_CHECKING:
    from flowledger.receiver.store.postgres._store import PostgresStore

__all__ = ["PostgresStore", "check_postgres_url", "is_postgres_url", "redacted"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        return getattr(importlib.import_module("flowledger.receiver.store.postgres._store"), name)
    raise AttributeError(f"module 'flowledger.receiver.store.postgres' has no attribute {name!r}")
