"""The engines the Store conformance suite runs against, and how to feed them events.

A new engine is added to :data:`ENGINES` (a factory from a fresh temporary
folder to an unopened store); it is done when every test here passes for it.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio

from flowledger.receiver._config import IngestLimits
from flowledger.receiver._validate import prepare_event
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._sqlite import SqliteStore

EngineFactory = Callable[[Path], Store]

ENGINES: Final[dict[str, EngineFactory]] = {
    "sqlite": lambda folder: SqliteStore(folder / "conformance.db", readers=2),
}
"""Every engine of the Store protocol, by name."""


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> EngineFactory:
    """A factory of unopened stores of one engine."""
    factory: EngineFactory = ENGINES[request.param]
    return factory


@pytest_asyncio.fixture
async def store(engine: EngineFactory, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store of the engine under test."""
    the_store = engine(tmp_path)
    await the_store.open()
    yield the_store
    await the_store.close()


def prepared(events: list[dict[str, Any]], *, project: str | None = None) -> list[PreparedEvent]:
    """Wire events as the ingest stage hands them to a store (the API key's project: ``project``)."""
    out = []
    for index, raw in enumerate(events):
        event = prepare_event(copy.deepcopy(raw), index, IngestLimits(), project)
        assert isinstance(event, PreparedEvent), event
        out.append(event)
    return out
