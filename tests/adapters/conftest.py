"""Fixtures for the adapters' tests: events captured in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowledger.testing import CapturedEvents, capture_events


@pytest.fixture
def events() -> Iterator[CapturedEvents]:
    """Events emitted during the test, captured in memory (not sent)."""
    with capture_events() as captured:
        yield captured
