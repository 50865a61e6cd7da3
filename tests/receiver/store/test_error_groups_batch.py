"""Error groups written a batch at a time: the same table as one failure (or one group) at a time."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.receiver.store._error_groups import (
    _DROP_GROUP,
    _READ_GROUP,
    _WRITE_GROUP,
    ERROR_GROUPS_SCHEMA,
    Failure,
    _deltas,
    _merged,
    record_failures,
)

_failures = st.builds(
    Failure.of,
    project=st.sampled_from([None, "acme"]),
    error_type=st.sampled_from(["ValueError", "KeyError"]),
    message=st.sampled_from(["bad quantity 3", "Timed out after 30s", "'sku'"]),
    node_id=st.sampled_from([None, "price"]),
    workflow_id=st.just("order-intake"),
    run_id=st.sampled_from([f"run-{i}" for i in range(8)]),
    at=st.sampled_from(["2026-11-01T10:00:00.000000Z", "2026-11-01T10:30:00.000000Z", "2026-11-01T11:05:00.000000Z"]),
)


async def _key_by_key(conn: aiosqlite.Connection, added: Sequence[Failure], removed: Sequence[Failure]) -> None:
    """The reference: every group read and written on its own, with the same merge."""
    for key, delta in _deltas(added, removed).items():
        rows = list(await conn.execute_fetchall(_READ_GROUP, key))
        row = _merged(key, delta, tuple(rows[0]) if rows else None)
        await conn.execute(_DROP_GROUP if row is None else _WRITE_GROUP, key if row is None else row)


async def _table(path: Path, batches: Sequence[tuple[Sequence[Failure], Sequence[Failure]]], *, batched: bool) -> Any:
    path.unlink(missing_ok=True)
    async with aiosqlite.connect(path) as conn:
        await conn.executescript(ERROR_GROUPS_SCHEMA)
        for added, removed in batches:
            await (record_failures if batched else _key_by_key)(conn, added, removed)
        await conn.commit()
        return list(await conn.execute_fetchall("SELECT * FROM error_groups ORDER BY project, fingerprint, hour"))


_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(
    batches=st.lists(
        st.tuples(st.lists(_failures, max_size=12), st.lists(_failures, max_size=4)), min_size=1, max_size=4
    )
)
def test_a_batch_writes_what_group_by_group_writes(tmp_path: Path, batches: list[Any]) -> None:
    """Adding and taking away failures in batches leaves the rows that reading and writing each group alone leaves."""
    batched = asyncio.run(_table(tmp_path / "batched.db", batches, batched=True))
    reference = asyncio.run(_table(tmp_path / "reference.db", batches, batched=False))
    assert batched == reference


@_SETTINGS
@given(failures=st.lists(_failures, min_size=1, max_size=20))
def test_one_batch_counts_what_one_failure_at_a_time_counts(tmp_path: Path, failures: list[Failure]) -> None:
    """Failures added in one batch give the groups (counts, first and last seen, samples) of adding them one by one."""
    together = asyncio.run(_table(tmp_path / "together.db", [(failures, [])], batched=True))
    one_by_one = asyncio.run(_table(tmp_path / "one.db", [([f], []) for f in failures], batched=True))
    assert together == one_by_one
    assert sum(row[7] for row in together) == len(failures)


def test_many_groups_in_one_batch_are_read_in_chunks(tmp_path: Path) -> None:
    """A batch touching more groups than one read takes (distinct hours) still finds every stored group."""
    failures = [
        Failure.of(
            project="acme",
            error_type="ValueError",
            message="bad",
            node_id=None,
            workflow_id="w",
            run_id=f"run-{i}",
            at=f"2026-{1 + i // 600:02d}-{1 + i // 24 % 25:02d}T{i % 24:02d}:00:00.000000Z",
        )
        for i in range(700)
    ]
    twice = asyncio.run(_table(tmp_path / "twice.db", [(failures, []), (failures, [])], batched=True))
    assert len(twice) == 700
    assert {row[7] for row in twice} == {2}
    with sqlite3.connect(tmp_path / "twice.db") as conn:
        assert conn.execute("SELECT sum(count) FROM error_groups").fetchone()[0] == 1400
