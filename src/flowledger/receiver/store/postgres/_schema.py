"""The PostgreSQL engine's schema migrations: versioned, refusing a newer one.

The scripts are :data:`~._migrations.PG_MIGRATIONS`, each version's SQL frozen
as text. Their tables are those of the SQLite engine's ledger (entries
chained by ``hash = SHA-256(0x00 || prev_hash || entry)`` in format 3,
``SHA-256(prev_hash || entry)`` in format 2, payloads apart, the Merkle
tree's perfect subtrees) and of its projections. Text columns
compare byte-wise (``COLLATE "C"``), as SQLite does, so both engines list
runs in the same order. Triggers refuse UPDATE and DELETE on the ledger and
its tree, as SQLite's do.

Migrations are numbered for this engine alone; ``flowledger_schema`` holds
the version, and a database newer than this flowledger is refused untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from flowledger._exceptions import SchemaVersionError, StoreError
from flowledger.receiver.store.postgres._migrations import PG_MIGRATIONS

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PG_MIGRATIONS", "PG_SCHEMA_VERSION", "check_pg_version", "column_type", "migrate_postgres"]

TEXT: Final = 'text COLLATE "C"'


def column_type(annotation: object) -> str:
    """The PostgreSQL type of a fold state field, from its annotation (``int | None`` is ``bigint``...)."""
    text = str(annotation)
    if "bool" in text:
        return "boolean"
    if "float" in text:
        return "double precision"
    if "int" in text:
        return "bigint"
    return TEXT


PG_SCHEMA_VERSION: Final = len(PG_MIGRATIONS)
_LOCK_KEY: Final = 0x666C6F776C6D6967  # "flowlmig": one migrating receiver at a time


async def migrate_postgres(conn: asyncpg.Connection, *, name: str) -> int:
    """Bring the schema up to :data:`PG_SCHEMA_VERSION` (under an advisory lock); return the version found.

    SchemaVersionError when the database is newer than this flowledger; StoreError when it holds
    tables of another application.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        has_version = await conn.fetchval("SELECT to_regclass('flowledger_schema') IS NOT NULL")
        if has_version:
            current = int(await conn.fetchval("SELECT version FROM flowledger_schema"))
        else:
            if await conn.fetchval("SELECT to_regclass('ledger') IS NOT NULL OR to_regclass('runs') IS NOT NULL"):
                raise StoreError(
                    f"{name} already has a ledger or runs table that flowledger did not make; "
                    "give flowledger a database of its own"
                )
            await conn.execute("CREATE TABLE flowledger_schema (version integer NOT NULL)")
            await conn.execute("INSERT INTO flowledger_schema VALUES (0)")
            current = 0
        if current > PG_SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database has schema version {current}, newer than the {PG_SCHEMA_VERSION} this flowledger "
                "knows; upgrade flowledger to open it"
            )
        for version in range(current, PG_SCHEMA_VERSION):
            await conn.execute(PG_MIGRATIONS[version])
            await conn.execute("UPDATE flowledger_schema SET version = $1", version + 1)
    return current


async def check_pg_version(conn: asyncpg.Connection, *, name: str) -> None:
    """Refuse (read-only) a database without a flowledger schema, or with another version of it."""
    if not await conn.fetchval("SELECT to_regclass('flowledger_schema') IS NOT NULL"):
        raise StoreError(f"{name} holds no flowledger ledger yet; start `flowledger serve --db URL` on it first")
    version = int(await conn.fetchval("SELECT version FROM flowledger_schema"))
    if version > PG_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {version}, newer than the {PG_SCHEMA_VERSION} this flowledger knows; "
            "upgrade flowledger to open it"
        )
    if version < PG_SCHEMA_VERSION:
        raise StoreError(
            f"{name} has schema version {version}, older than this flowledger's {PG_SCHEMA_VERSION}; "
            "start `flowledger serve --db URL` on it once to bring it up to date"
        )
