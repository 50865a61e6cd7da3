"""Fixtures for the SDK's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import flowledger
from flowledger.instrument import _pipeline
from flowledger.testing import CapturedEvents, capture_events


@pytest.fixture
def events() -> Iterator[CapturedEvents]:
    """Events emitted during the test, captured in memory (not sent)."""
    with capture_events() as captured:
        yield captured


@pytest.fixture
def configure() -> Iterator[Callable[..., Any]]:
    """``configure(**settings)`` for one test; the settings in force before come back after."""
    before = _pipeline.pipeline().settings

    def apply(**changes: Any) -> Any:
        return flowledger.configure(**changes)

    yield apply
    current = _pipeline.pipeline()
    if current.settings is not before:
        _pipeline._create(before)
