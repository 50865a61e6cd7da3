"""The fault suite at CI scale: whatever breaks, the workflow succeeds and no event is lost unnoticed or doubled.

Each test runs one scenario of ``_scenarios.py`` with real processes (the
receiver as ``flowledger serve``, the producer as a generated workflow in a
process of its own) and checks what the ledger holds afterwards. The figures
themselves (times, memory) are reported by ``python3 tasks.py faults``, not
asserted: a loaded machine moves them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flowledger.receiver.store._sqlite import _CACHE_KIB
from tests.faults import _scenarios
from tests.faults._scenarios import SCALES, Outcome, World
from tests.faults._world import generate_workflow

pytestmark = [pytest.mark.faults, pytest.mark.slow]

_NETWORK: list[Callable[[World], Outcome]] = [
    _scenarios.proxy_latency,
    _scenarios.proxy_resets,
    _scenarios.proxy_half_open,
    _scenarios.proxy_slow_reads,
    _scenarios.proxy_blackhole,
    *[s for s in _scenarios.SCENARIOS if s.__name__.startswith("answers_")],
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp: Path = tmp_path_factory.mktemp("faults")
    return World(tmp, generate_workflow(tmp), SCALES["ci"])


def _whole(out: Outcome) -> None:
    """Every run of the workflow succeeded, the chain verifies, nothing is doubled, nothing is missing."""
    assert out.runs_ok == out.runs > 0, out
    assert out.chain_ok, out
    assert out.duplicated == 0, out
    assert out.missing == 0, out
    assert out.lost_counted == 0, out


def test_baseline(world: World) -> None:
    out = _scenarios.baseline(world)
    _whole(out)
    assert out.spooled == 0


def test_receiver_killed_again_and_again(world: World) -> None:
    out = _scenarios.receiver_kill_loop(world)
    _whole(out)


@pytest.mark.parametrize("scenario", _NETWORK, ids=lambda s: s.__name__)
def test_network_faults_lose_nothing(world: World, scenario: Callable[[World], Outcome]) -> None:
    """Latency, resets, half-open and black-holed connections, slow reads, and 500/429/503 answers."""
    _whole(scenario(world))


def test_database_disk_full(world: World) -> None:
    """The receiver cannot write: it stays up, the SDK spools, and once there is room everything is stored."""
    out = _scenarios.database_disk_full(world)
    _whole(out)
    assert out.facts["receiver_alive_while_full"] == 1.0
    assert out.spooled > 0, "the full disk never bit"


def test_spool_disk_full(world: World) -> None:
    """No receiver and no room to spool: the workflow still succeeds, and every lost event is counted."""
    out = _scenarios.spool_disk_full(world)
    assert out.runs_ok == out.runs > 0
    assert out.lost_counted is not None
    assert out.lost_counted > 0, "the full spool never bit"
    assert out.missing == out.lost_counted, "an event went missing without being counted"
    assert out.duplicated == 0
    assert out.chain_ok


def test_workflow_process_sigkilled(world: World) -> None:
    """The run of a SIGKILLed workflow becomes stuck; what it sent before is stored and verifies."""
    out = _scenarios.producer_killed(world)
    assert out.stored > 0
    assert out.facts["stuck_after_kill_s"] > 0
    assert out.chain_ok
    assert out.duplicated == 0


@pytest.mark.parametrize("skew_s", [300.0, -300.0])
def test_clock_skew(world: World, skew_s: float) -> None:
    """A producer clock minutes off: nothing lost, no negative duration, no live run taken for stuck."""
    out = _scenarios.clock_skew(skew_s)(world)
    _whole(out)
    assert out.facts["stuck_while_alive"] == 0
    assert out.facts["negative_durations"] == 0


def test_two_receivers_on_one_file(world: World) -> None:
    _whole(_scenarios.two_receivers(world))


@pytest.mark.timeout(SCALES["ci"].soak_s + 300)
def test_soak_memory_stays_flat(world: World) -> None:
    """Two minutes of steady load: memory grows no more than the receiver's SQLite page cache may hold.

    The write connection's page cache (``cache_size``, 64 MiB) fills as the database grows, which takes
    longer than two minutes at this load; past it, the receiver's memory must stay flat. The producer
    has no such cache.
    """
    out = _scenarios.soak(world)
    _whole(out)
    page_cache_mib = _CACHE_KIB / 1024
    for who, allowed_mib in (("receiver", page_cache_mib + 24), ("producer", 16)):
        first = out.facts[f"{who}_rss_first_quarter_mib"]
        last = out.facts[f"{who}_rss_last_quarter_mib"]
        assert last - first <= allowed_mib, (who, first, last)
