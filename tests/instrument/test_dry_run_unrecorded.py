"""A dry run simulates its effects whether or not it is recorded: disabled, or a run that could not start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger.instrument import in_context
from flowledger.testing import CapturedEvents

ROOT = Path(__file__).resolve().parents[2]

_SHOP = """
    import flowledger
    charged = []

    @flowledger.node(id="charge", effect=True)
    def charge(order):
        charged.append(order)
        return {"charged": order}

    with flowledger.run("shop", dry_run=True) as run:
        out = charge("A1")
    print(out, bool(charged), run.active)
"""


def _python(script: str, tmp_path: Path, **env: str) -> str:
    """Run ``script`` in a fresh interpreter (flowledger reads its environment there) and return what it printed."""
    environ = {**os.environ, "FLOWLEDGER_SPOOL_DIR": str(tmp_path / "spool"), **env}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_disabled_sdk_still_simulates_the_effects_of_a_dry_run(tmp_path: Path) -> None:
    """FLOWLEDGER_DISABLED=1: the effect node of a dry run returns None and its code does not run, as when recorded."""
    assert _python(_SHOP, tmp_path) == "None False True"
    assert _python(_SHOP, tmp_path, FLOWLEDGER_DISABLED="1") == "None False False"


def test_a_dry_run_that_could_not_start_still_simulates_its_effects(tmp_path: Path) -> None:
    """A run whose start fails inside the SDK (here the application's span processor raises) is still a dry run."""
    broken_processor = """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

        class Broken(SpanProcessor):
            def on_start(self, span, parent_context=None):
                raise RuntimeError("the application's processor broke")

        provider = TracerProvider()
        provider.add_span_processor(Broken())
        trace.set_tracer_provider(provider)
    """
    assert _python(textwrap.dedent(broken_processor) + textwrap.dedent(_SHOP), tmp_path) == "None False False"


@pytest.fixture
def disabled(configure: Callable[..., Any]) -> None:
    """flowledger disabled in code for one test."""
    configure(disabled=True)


def test_every_kind_of_effect_node_is_simulated_in_an_unrecorded_dry_run(disabled: None) -> None:
    """configure(disabled=True): sync, async, generator and async generator effects do nothing in a dry run."""
    done: list[str] = []

    @flowledger.node(effect=True)
    def charge(order: str) -> str:
        done.append("sync")
        return order

    @flowledger.node(effect=True)
    async def charge_async(order: str) -> str:
        done.append("async")
        return order

    @flowledger.node(effect=True)
    def send(orders: list[str]) -> Iterator[str]:
        done.append("generator")
        yield from orders

    @flowledger.node(effect=True)
    async def send_async(orders: list[str]) -> AsyncIterator[str]:
        done.append("async generator")
        for order in orders:
            yield order

    async def consume() -> list[str]:
        return [order async for order in send_async(["A1"])]

    with flowledger.run("shop", dry_run=True):
        assert charge("A1") is None
        assert asyncio.run(charge_async("A1")) is None
        assert list(send(["A1"])) == []
        assert asyncio.run(consume()) == []
    assert done == []


def test_an_unrecorded_live_run_carries_its_effects_out(disabled: None) -> None:
    """Not a dry run (nor inside one): the effect runs, disabled or not; a live run nested in a dry run is live."""
    done: list[str] = []

    @flowledger.node(effect=True)
    def charge(order: str) -> str:
        done.append(order)
        return order

    assert charge("A0") == "A0"
    with flowledger.run("shop"):
        assert charge("A1") == "A1"
    with flowledger.run("shop", dry_run=True):
        with flowledger.run("refund"):
            assert charge("A2") == "A2"
        assert charge("A3") is None
    assert charge("A4") == "A4"  # the dry run is over
    assert done == ["A0", "A1", "A2", "A4"]


def test_a_thread_of_an_unrecorded_dry_run_simulates_too(disabled: None) -> None:
    """The dry run is in the context: a thread given it (in_context) simulates the run's effects."""
    done: list[str] = []

    @flowledger.node(effect=True)
    def charge(order: str) -> str:
        done.append(order)
        return order

    results: list[Any] = []
    with flowledger.run("shop", dry_run=True):
        work = in_context(lambda: results.append(charge("A1")))
    work()
    assert results == [None]
    assert done == []


def test_a_recorded_dry_run_still_records_the_effect_as_simulated(events: CapturedEvents) -> None:
    """Recorded, the dry run's effect is a node_finished marked simulated, its code not run (as before)."""
    done: list[str] = []

    @flowledger.node(effect=True)
    def charge(order: str) -> str:
        done.append(order)
        return order

    with flowledger.run("shop", dry_run=True):
        assert charge("A1") is None
    (finished,) = events.nodes("charge")
    assert finished["data"]["simulated"] is True
    assert done == []
