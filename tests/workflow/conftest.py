"""Fixtures for the workflow runtime tests (shared with the codegen tests, see ``tests._generated``): the generation
helpers, a real receiver, and the five-node workflow generated against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowledger.receiver._config import ReceiverConfig
from tests._five_steps import Workflow
from tests._generated import build, events, write_definition
from tests.receiver._support import LiveReceiver, start_receiver

__all__ = ["build", "events", "live", "wf", "write_definition"]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver with a real SQLite ledger on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"))
    yield receiver
    receiver.stop()


@pytest.fixture
def wf(tmp_path: Path, live: LiveReceiver) -> Workflow:
    """The five-node workflow (fetch, charge (an effect), price, pack, ship), generated against ``live``."""
    folder = tmp_path / "work"
    folder.mkdir()
    return Workflow(folder, live)
