"""Periodic reconciliation: bounded passes that sweep every run over time, check new runs at once, set the
metrics, and warn when drift persists over two passes."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._reconciler import ReconcileProgress, reconcile_pass
from flowledger.receiver.store._integrity import DriftKind
from flowledger.receiver.store._protocol import EventOutcome
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, start_receiver
from tests.receiver.store.conformance.conftest import prepared


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open store on a fresh file."""
    the_store = SqliteStore(tmp_path / "r.db")
    await the_store.open()
    yield the_store
    await the_store.close()


async def _add(store: SqliteStore, *runs: RunEvents) -> None:
    outcomes = await store.append(prepared([e for run in runs for e in run.events]))
    assert {o for o, _ in outcomes} == {EventOutcome.ACCEPTED}


def _set_status(db_path: Path, run_id: str, status: str) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))
    conn.close()


@pytest.mark.asyncio
async def test_passes_are_bounded_and_sweep_every_run(store: SqliteStore) -> None:
    """With 2 runs per pass, 5 runs are swept in 3 passes; a hand-edited run is found within one sweep."""
    runs = sorted((simple_run() for _ in range(5)), key=lambda r: r.run_id)
    await _add(store, *runs)
    _set_status(store.path, runs[4].run_id, "aborted")
    config = ReceiverConfig(reconcile_runs_per_pass=2, reconcile_recent_events=0)
    progress, metrics = ReconcileProgress(), Metrics()
    checked = []
    for _ in range(3):
        report = await reconcile_pass(store, config, metrics, progress)
        checked.append(report.runs_checked)
    assert checked == [2, 2, 1]
    assert report.kinds[DriftKind.STATUS_MISMATCH].samples == [runs[4].run_id]
    assert progress.drifted == [runs[4].run_id]
    assert metrics.reconcile.passes == 3
    assert metrics.reconcile.drift["status_mismatch"] == 1
    # The sweep starts over; the drifted run is checked again in every pass until it is repaired.
    again = await reconcile_pass(store, config, metrics, progress)
    assert again.runs_checked == 3
    assert again.drifted == [runs[4].run_id]


@pytest.mark.asyncio
async def test_a_pass_checks_the_runs_appended_since_the_previous_one(store: SqliteStore) -> None:
    """Runs of the ledger entries appended after a pass are checked by the next pass, beyond its sweep slice."""
    await _add(store, *(simple_run() for _ in range(4)))
    config = ReceiverConfig(reconcile_runs_per_pass=1, reconcile_recent_events=1000)
    progress = ReconcileProgress()
    first = await reconcile_pass(store, config, Metrics(), progress)
    assert first.runs_checked == 1  # no previous pass: only the sweep slice
    newcomers = [simple_run(), simple_run()]
    await _add(store, *newcomers)
    second = await reconcile_pass(store, config, Metrics(), progress)
    assert second.runs_checked == 3  # the two new runs and one of the sweep
    assert second.clean


def _gauge(text: str, name: str) -> dict[str, float]:
    """The samples of one metric by their labels."""
    found = {}
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        found[match.group(1) or ""] = float(match.group(2))
    return found


def _wait_for(live: LiveReceiver, check: Callable[[str], bool], timeout_s: float = 30.0) -> str:
    """The /metrics text once ``check`` holds for it (or the last one read when time ran out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = live.get("/metrics").text
        if check(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_the_receiver_reconciles_in_the_background(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A receiver with a short interval sets the drift, latency and timestamp metrics, warns when a hand edit
    persists over two passes, and reports no drift once POST /api/reconcile repaired it."""
    config = ReceiverConfig(db_path=tmp_path / "bg.db", sweep_interval_s=0, reconcile_interval_s=0.05)
    live = start_receiver(config)
    try:
        runs = [simple_run() for _ in range(3)]
        assert live.post([e for run in runs for e in run.events]).json()["accepted"] == 12
        text = _wait_for(live, lambda t: _gauge(t, "flowledger_reconcile_passes_total").get("", 0) >= 1)
        assert _gauge(text, "flowledger_last_reconcile_timestamp_seconds")[""] > time.time() - 60
        assert set(_gauge(text, "flowledger_projection_sync_latency_ms")) == {""}
        assert _gauge(text, "flowledger_projection_drift_count") == {
            '{kind="missing_in_projection"}': 0,
            '{kind="missing_in_ledger"}': 0,
            '{kind="status_mismatch"}': 0,
            '{kind="field_mismatch"}': 0,
        }
        with caplog.at_level(logging.WARNING, logger="flowledger.receiver"):
            _set_status(live.db_path, runs[1].run_id, "aborted")
            text = _wait_for(
                live,
                lambda t: _gauge(t, "flowledger_projection_drift_count").get('{kind="status_mismatch"}') == 1,
            )
            assert _gauge(text, "flowledger_projection_drift_count")['{kind="status_mismatch"}'] == 1
            deadline = time.monotonic() + 30
            while not any("persists" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
                time.sleep(0.05)
        warnings = [r.getMessage() for r in caplog.records if "persists" in r.getMessage()]
        assert warnings, "no warning about persisting drift"
        assert runs[1].run_id in warnings[0]
        assert "flowledger reconcile --repair" in warnings[0]
        answer = httpx.post(f"{live.url}/api/reconcile", timeout=30).json()
        assert (answer["repaired"], answer["status_mismatch"]["samples"]) == (1, [runs[1].run_id])
        text = _wait_for(
            live, lambda t: _gauge(t, "flowledger_projection_drift_count").get('{kind="status_mismatch"}') == 0
        )
        assert _gauge(text, "flowledger_projection_drift_count")['{kind="status_mismatch"}'] == 0
    finally:
        live.stop()


def test_reconcile_settings_come_from_the_environment_and_are_checked() -> None:
    """FLOWLEDGER_RECEIVER_RECONCILE_* set the task; a value below its minimum is refused naming the variable."""
    from flowledger._exceptions import ConfigError
    from flowledger.receiver._config import config_from_env

    config = config_from_env(
        environ={
            "FLOWLEDGER_RECEIVER_RECONCILE_INTERVAL_S": "0",
            "FLOWLEDGER_RECEIVER_RECONCILE_RUNS_PER_PASS": "50",
            "FLOWLEDGER_RECEIVER_RECONCILE_RECENT_EVENTS": "7",
        }
    )
    assert (config.reconcile_interval_s, config.reconcile_runs_per_pass, config.reconcile_recent_events) == (0, 50, 7)
    runs_refused = "FLOWLEDGER_RECEIVER_RECONCILE_RUNS_PER_PASS=0 must be a whole number from 1 to 1000000000"
    with pytest.raises(ConfigError, match=runs_refused):
        config_from_env(environ={"FLOWLEDGER_RECEIVER_RECONCILE_RUNS_PER_PASS": "0"})
    interval_refused = r"RECONCILE_INTERVAL_S=-1 must be a number from 0 to \d+ \(0 turns reconciliation off\)"
    with pytest.raises(ConfigError, match=interval_refused):
        config_from_env(environ={"FLOWLEDGER_RECEIVER_RECONCILE_INTERVAL_S": "-1"})
