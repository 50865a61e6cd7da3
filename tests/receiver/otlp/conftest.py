"""Fixtures of the OTel interop tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import LiveReceiver, start_receiver


@pytest.fixture
def receiver_config(tmp_path: Path) -> ReceiverConfig:
    """A receiver on a fresh database file, sweeper off."""
    return ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0)


@pytest.fixture
def receiver(receiver_config: ReceiverConfig) -> Iterator[LiveReceiver]:
    """A real receiver on 127.0.0.1."""
    live = start_receiver(receiver_config)
    yield live
    live.stop()
