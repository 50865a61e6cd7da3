"""Fixtures of the receiver tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, Producer, start_receiver


@pytest.fixture
def producer() -> Producer:
    """A fresh producer."""
    return Producer()


@pytest.fixture
def receiver_config(tmp_path: Path) -> ReceiverConfig:
    """Config of a receiver on a fresh database file, sweeper off."""
    return ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0)


@pytest.fixture
def live(receiver_config: ReceiverConfig) -> Iterator[LiveReceiver]:
    """A real receiver on 127.0.0.1."""
    receiver = start_receiver(receiver_config)
    yield receiver
    receiver.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FLOWLEDGER_* variables leak in from the environment."""
    for name in list(os.environ):
        if name.startswith("FLOWLEDGER_"):
            monkeypatch.delenv(name)
