"""Session-wide test settings: nothing a test emits leaves this machine's temp dirs."""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

from tests._postgres import POSTGRES_MISSING, postgres_bindir, postgres_cluster, postgres_required

# Set before flowledger builds its pipeline: spooled events go to a temp dir, and
# an SDK that is not pointed anywhere sends to a closed local port.
# The spool dir is removed at exit, after the SDK's own exit hooks (registered later, so run first).
if "FLOWLEDGER_SPOOL_DIR" not in os.environ:
    os.environ["FLOWLEDGER_SPOOL_DIR"] = _SPOOL = tempfile.mkdtemp(prefix="flowledger-test-spool-")
    atexit.register(shutil.rmtree, _SPOOL, ignore_errors=True)
os.environ.setdefault("FLOWLEDGER_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("FLOWLEDGER_EXPORT_SPANS", "0")
for _name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
    os.environ.pop(_name, None)
# The thread switch interval `flowledger serve` sets: at it the SQLite store runs a commit group's
# statements on a thread of their own, so the tests that append in process take that path too.
sys.setswitchinterval(0.0002)


# --- PostgreSQL: one throwaway cluster per session, a fresh database per test (tests/_postgres.py) ---

_DATABASE_NUMBERS = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL cluster's ``postgres`` database, started once per session."""
    if postgres_bindir() is None:
        if postgres_required():
            pytest.fail(POSTGRES_MISSING)
        pytest.skip(POSTGRES_MISSING)
    try:
        cluster = postgres_cluster()
        url = cluster.__enter__()
    except Exception as exc:
        if postgres_required():
            pytest.fail(f"could not start PostgreSQL: {exc}")
        pytest.skip(f"could not start PostgreSQL: {exc}")
    try:
        yield url
    finally:
        cluster.__exit__(None, None, None)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """The URL of a new, empty database in the session's cluster (one per test)."""
    import asyncpg

    name = f"flowledger_test_{os.getpid()}_{next(_DATABASE_NUMBERS)}"

    async def create() -> None:
        conn = await asyncpg.connect(postgres_server)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return postgres_server.rsplit("/", 1)[0] + "/" + name
