"""The engines the Store conformance suite runs against, and how to feed them events.

A new engine is added to :data:`ENGINE_NAMES` and to the ``engine`` fixture
(a factory from a fresh temporary folder to an unopened store); it is done
when every test here passes for it. PostgreSQL runs on a throwaway cluster
(``tests/_postgres.py``), a new database per test. A test (or module) of a
part an engine has not built yet is marked ``sqlite_only(reason)``: it runs
on SQLite alone, and the marker says which and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio

from flowledger.receiver._config import IngestLimits, ReceiverConfig
from flowledger.receiver._validate import prepare_event
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import LiveReceiver, start_receiver

EngineFactory = Callable[[Path], Store]

ENGINES: Final[dict[str, EngineFactory]] = {
    "sqlite": lambda folder: SqliteStore(folder / "conformance.db", readers=2),
}
"""The engines that need nothing but a folder, by name (the property-based tests use these)."""

ENGINE_NAMES: Final = ("postgres", "sqlite")
"""Every engine of the Store protocol."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test on every engine, or on SQLite alone when it is marked ``sqlite_only``."""
    if "engine_kind" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("engine_kind", ["sqlite"] if only else list(ENGINE_NAMES))


@pytest.fixture
def engine(engine_kind: str, request: pytest.FixtureRequest) -> EngineFactory:
    """A factory of unopened stores of one engine (PostgreSQL: every store of a test on one new database)."""
    if engine_kind == "postgres":
        from flowledger.receiver.store.postgres import PostgresStore

        url: str = request.getfixturevalue("postgres_url")
        return lambda folder: PostgresStore(url)
    return ENGINES[engine_kind]


@pytest_asyncio.fixture
async def store(engine: EngineFactory, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store of the engine under test."""
    the_store = engine(tmp_path)
    await the_store.open()
    yield the_store
    await the_store.close()


def fresh_postgres(server: str) -> EngineFactory:
    """A factory of stores each on a new database of the cluster at ``server`` (for property tests, whose
    examples each need an empty store); it may be called inside a running event loop."""
    import asyncpg

    from flowledger.receiver.store.postgres import PostgresStore

    def fresh(folder: Path) -> Store:
        name = f"fresh_{secrets.token_hex(6)}"

        async def create() -> None:
            conn = await asyncpg.connect(server)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        # Called inside the test's event loop: the database is made on a loop of its own, in a thread.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, create()).result()
        return PostgresStore(server.rsplit("/", 1)[0] + "/" + name, pool_max=2)

    return fresh


def prepared(events: list[dict[str, Any]], *, project: str | None = None) -> list[PreparedEvent]:
    """Wire events as the ingest stage hands them to a store (the API key's project: ``project``)."""
    out = []
    for index, raw in enumerate(events):
        event = prepare_event(copy.deepcopy(raw), index, IngestLimits(), project)
        assert isinstance(event, PreparedEvent), event
        out.append(event)
    return out


@contextlib.contextmanager
def keyed_receiver(
    keys: Mapping[str, str], engine_kind: str, receiver_config: ReceiverConfig, request: pytest.FixtureRequest
) -> Iterator[LiveReceiver]:
    """A real receiver with the API ``keys`` (key -> project), on the engine under test."""
    config = replace(receiver_config, api_keys=dict(keys))
    if engine_kind == "postgres":
        config = replace(config, db_url=request.getfixturevalue("postgres_url"))
    receiver = start_receiver(config)
    try:
        yield receiver
    finally:
        receiver.stop()


def bearer(keys: Mapping[str, str], project: str) -> dict[str, str]:
    """The ``Authorization`` header of ``project``'s key among ``keys``."""
    token = next(token for token, name in keys.items() if name == project)
    return {"Authorization": f"Bearer {token}"}
