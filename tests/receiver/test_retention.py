"""Retention policies: by age, by count per workflow, per project; bounded per pass; configured from JSON."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from flowledger._exceptions import ConfigError
from flowledger.receiver._config import ReceiverConfig, RetentionPolicy, config_from_env, parse_retention
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._retention import retention_pass
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._protocol import EventOutcome, RunQuery
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import RunEvents, simple_run, start_receiver
from tests.receiver.store.conformance.conftest import prepared


class _Parts:
    def __init__(self, store: SqliteStore, writer: Writer) -> None:
        self.store, self.writer = store, writer

    async def add(self, *runs: RunEvents) -> None:
        outcomes = await self.store.append(prepared([e for run in runs for e in run.events]))
        assert {o for o, _ in outcomes} == {EventOutcome.ACCEPTED}

    async def run_ids(self) -> set[str]:
        return {run["run_id"] for run in (await self.store.list_runs(RunQuery(limit=1000))).runs}


@pytest_asyncio.fixture
async def parts(tmp_path: Path) -> AsyncIterator[_Parts]:
    """An open store and its writer task."""
    store = SqliteStore(tmp_path / "r.db")
    await store.open()
    writer = Writer(store, Metrics(), max_requests=16, commit_max_events=1000)
    writer.start()
    yield _Parts(store, writer)
    await writer.stop()
    await store.close()


def _config(*policies: RetentionPolicy, per_pass: int = 1000) -> ReceiverConfig:
    return ReceiverConfig(retention=policies, retention_max_runs_per_pass=per_pass)


@pytest.mark.asyncio
async def test_max_age_purges_finished_runs_and_spares_running_ones(parts: _Parts) -> None:
    """Finished runs older than the maximum age are purged; a running run of the same age is kept."""
    old = [simple_run() for _ in range(3)]
    running = RunEvents().start()
    await parts.add(*old, running)
    purged = await retention_pass(parts.store, parts.writer, _config(RetentionPolicy(max_age_s=1.0)))
    assert purged == 3
    assert await parts.run_ids() == {running.run_id}
    report = await parts.store.verify()
    assert report.ok
    assert report.runs_purged == 3
    assert (await retention_pass(parts.store, parts.writer, _config(RetentionPolicy(max_age_s=1e9)))) == 0


@pytest.mark.asyncio
async def test_max_runs_per_workflow_keeps_the_newest(parts: _Parts) -> None:
    """Each workflow keeps only its newest N finished runs."""
    w = sorted((simple_run(workflow_id="w") for _ in range(5)), key=lambda r: r.started_at)
    v = [simple_run(workflow_id="v") for _ in range(2)]
    await parts.add(*w, *v)
    purged = await retention_pass(parts.store, parts.writer, _config(RetentionPolicy(max_runs_per_workflow=2)))
    assert purged == 3
    assert await parts.run_ids() == {w[3].run_id, w[4].run_id, *(r.run_id for r in v)}


@pytest.mark.asyncio
async def test_a_project_policy_touches_only_its_project(parts: _Parts) -> None:
    """A policy with a project purges that project's runs only."""
    alpha, beta = simple_run(project="alpha"), simple_run(project="beta")
    await parts.add(alpha, beta)
    await retention_pass(parts.store, parts.writer, _config(RetentionPolicy(project="alpha", max_age_s=1.0)))
    assert await parts.run_ids() == {beta.run_id}


@pytest.mark.asyncio
async def test_a_pass_is_bounded(parts: _Parts) -> None:
    """One pass purges at most retention_max_runs_per_pass runs, oldest first; the next pass goes on."""
    runs = sorted((simple_run() for _ in range(7)), key=lambda r: r.started_at)
    await parts.add(*runs)
    config = _config(RetentionPolicy(max_age_s=1.0), RetentionPolicy(max_runs_per_workflow=0), per_pass=3)
    assert await retention_pass(parts.store, parts.writer, config) == 3
    assert await parts.run_ids() == {r.run_id for r in runs[3:]}
    assert await retention_pass(parts.store, parts.writer, config) == 3
    assert await retention_pass(parts.store, parts.writer, config) == 1
    assert await parts.run_ids() == set()
    assert (await parts.store.verify()).ok


def test_the_receiver_applies_its_policies_in_the_background(tmp_path: Path) -> None:
    """A receiver with a policy and a short interval purges old runs by itself; purge entries name the policy."""
    config = ReceiverConfig(
        db_path=tmp_path / "bg.db",
        sweep_interval_s=0,
        retention=(RetentionPolicy(max_age_s=1.0),),
        retention_interval_s=0.05,
    )
    live = start_receiver(config)
    try:
        runs = [simple_run() for _ in range(4)]
        assert live.post([e for run in runs for e in run.events]).json()["accepted"] == 16
        deadline = time.monotonic() + 30
        while live.get("/api/runs").json()["total"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.get("/api/runs").json()["total"] == 0
        verdict = httpx.get(f"{live.url}/api/verify", timeout=30).json()
        assert verdict["ok"]
        assert verdict["runs_purged"] == 4
    finally:
        live.stop()


def test_policies_are_read_from_json() -> None:
    """FLOWLEDGER_RECEIVER_RETENTION holds a JSON list (or one object) of policies."""
    text = '[{"max_age_days": 30}, {"project": "p", "max_runs_per_workflow": 100, "max_age_s": 60}]'
    assert parse_retention(text) == (
        RetentionPolicy(max_age_s=30 * 86_400.0),
        RetentionPolicy(project="p", max_age_s=60.0, max_runs_per_workflow=100),
    )
    config = config_from_env(environ={"FLOWLEDGER_RECEIVER_RETENTION": '{"max_runs_per_workflow": 5}'})
    assert config.retention == (RetentionPolicy(max_runs_per_workflow=5),)
    assert config_from_env(environ={"FLOWLEDGER_RECEIVER_RETENTION_INTERVAL_S": "60"}).retention_interval_s == 60.0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nope", "not JSON"),
        ("3", "list"),
        ("[{}]", "limits nothing"),
        ('[{"max_age_days": -1}]', "positive"),
        ('[{"max_age_days": "x"}]', "positive"),
        ('[{"max_runs_per_workflow": 1.5}]', "whole number"),
        ('[{"project": 3, "max_age_s": 1}]', "project"),
        ('[{"keep": 3}]', "unknown keys"),
        ("[3]", "object"),
    ],
)
def test_bad_policies_are_config_errors(text: str, words: str) -> None:
    """Every malformed policy is a ConfigError that says what is wrong."""
    with pytest.raises(ConfigError, match=words):
        parse_retention(text)


def test_describe_names_the_policy() -> None:
    """The purge entry names the policy that asked."""
    assert RetentionPolicy(project="p", max_age_s=60.0).describe() == "retention policy project=p max_age_s=60.0"
