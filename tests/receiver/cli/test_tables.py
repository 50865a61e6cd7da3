"""What the CLI's tables say: a mode column, why a run is stuck, effects simulated or skipped, 80 columns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from flowledger._wire import format_ts
from flowledger.receiver._app import create_app
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._sweeper import sweep_once
from flowledger.receiver.cli._commands import runs_command, show_command
from tests.receiver._support import RunEvents, typical_run


def _effect_run(*, dry_run: bool, **flags: Any) -> RunEvents:
    run = RunEvents().start(dry_run=dry_run)
    run.node("charge")
    for event in run.events:
        if event["kind"] == "node_finished":
            event["data"].update(effect=True, idempotency_key="order-42", **flags)
    return run.finish()


def _fill(config: ReceiverConfig, runs: list[RunEvents], stuck: RunEvents) -> None:
    """Store the runs, then let one sweep mark ``stuck`` (started long ago, never finished) stuck."""

    async def main() -> None:
        app = create_app(config)
        state = app.state.receiver
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client,
        ):
            events = [e for run in [*runs, stuck] for e in run.events]
            assert (await client.post("/v1/events", json={"events": events})).json()["rejected"] == []
            later = format_ts(time.time_ns() + 3600 * 1_000_000_000)  # silent by the receiver's clock too
            assert await sweep_once(state.store, state.writer, config, state.metrics, now=later) == [stuck.run_id]

    asyncio.run(main())


def _runs(tmp_path: Path) -> tuple[Path, dict[str, RunEvents]]:
    config = ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0, stuck_after_s=60)
    named = {
        "failed": typical_run(),
        "dry": _effect_run(dry_run=True, simulated=True),
        "duplicate": _effect_run(dry_run=False, duplicate=True),
    }
    stuck = RunEvents().start()
    stuck.node("fetch")
    _fill(config, list(named.values()), stuck)
    named["stuck"] = stuck
    return config.db_path, named


def _invoke(command: Any, args: list[str], columns: int) -> str:
    result = CliRunner().invoke(command, args, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_runs_has_a_mode_column_and_says_why_a_run_is_stuck(tmp_path: Path) -> None:
    """runs shows dry/live per run, and a stuck run's error cell gives the sweeper's reason."""
    db, named = _runs(tmp_path)
    out = _invoke(runs_command, ["--db", str(db)], 200)
    lines = {name: next(line for line in out.splitlines() if run.run_id in line) for name, run in named.items()}
    assert " mode " in out.splitlines()[1]
    assert " dry " in lines["dry"]
    assert " live " in lines["failed"]
    assert "stuck: no event since" in lines["stuck"]


def test_run_ids_fold_at_most_once_at_80_columns_and_never_when_wide(tmp_path: Path) -> None:
    """At 80 columns every line fits and each run id takes two lines at most; from 120 columns it takes one."""
    db, named = _runs(tmp_path)
    narrow = _invoke(runs_command, ["--db", str(db)], 80).splitlines()
    assert all(len(line) <= 80 for line in narrow)
    for run in named.values():
        first = next(i for i, line in enumerate(narrow) if line.startswith(run.run_id[:19]))
        assert narrow[first + 1].startswith(run.run_id[19:])
    wide = _invoke(runs_command, ["--db", str(db)], 120)
    assert all(run.run_id in wide for run in named.values())


def test_show_says_dry_run_simulated_effect_and_duplicate_skipped(tmp_path: Path) -> None:
    """show names the run's mode and what each effect attempt did: simulated, or skipped as a duplicate."""
    db, named = _runs(tmp_path)
    dry = _invoke(show_command, [named["dry"].run_id, "--db", str(db)], 200)
    assert "mode   dry run: effect nodes were simulated" in dry
    assert "effect 1 effect attempt: 1 simulated" in dry
    assert "effect simulated (dry run)" in dry
    duplicate = _invoke(show_command, [named["duplicate"].run_id, "--db", str(db)], 200)
    assert "mode   live" in duplicate
    assert "1 skipped as a duplicate by the idempotency guard" in duplicate
    assert "effect skipped: a duplicate" in duplicate
    stuck = _invoke(show_command, [named["stuck"].run_id, "--db", str(db)], 200)
    assert "stuck  no event since" in stuck
