"""The Celery adapter with a real worker process and a real Redis server; records checked in a real receiver."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

import flowledger
from flowledger.instrument import _pipeline

pytest.importorskip("celery", reason="the Celery adapter's tests need flowledger[celery]")
pytest.importorskip("redis", reason="the Celery adapter's tests need the redis client")

from flowledger.receiver._config import ReceiverConfig
from tests._redis import REDIS_MISSING, redis_binary, redis_server
from tests._serve import serve_receiver
from tests.adapters import _celery_app

ROOT: Final = Path(__file__).resolve().parents[2]
START_TIMEOUT_S: Final = 30.0
"""How long a server or worker may take to come up before the test gives up (not a measurement)."""
RECORDS_TIMEOUT_S: Final = 30.0
"""How long the receiver may take to hold what the worker recorded."""

pytestmark = pytest.mark.skipif(redis_binary() is None, reason=REDIS_MISSING)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on a free local port, with no persistence."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module")
def receiver_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real receiver on a free port, with its own database."""
    db = tmp_path_factory.mktemp("celery-receiver") / "ledger.db"
    url, server, thread = serve_receiver(ReceiverConfig(db_path=db, sweep_interval_s=0))
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def worker(redis_url: str, receiver_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real Celery worker (prefork, two processes) sending its records to the receiver."""
    env = {
        **os.environ,
        _celery_app.BROKER_ENV: redis_url,
        "FLOWLEDGER_ENDPOINT": receiver_url,
        "FLOWLEDGER_SPOOL_DIR": str(tmp_path_factory.mktemp("worker-spool")),
        "FLOWLEDGER_BATCH_MAX_AGE_S": "0.05",
        "FLOWLEDGER_EXPORT_SPANS": "1",
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.adapters._celery_app",
                "worker",
                "--pool=prefork",
                "--concurrency=2",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    app = _celery_app.app
    app.conf.broker_url = app.conf.result_backend = redis_url
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not app.control.ping(timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the Celery worker did not start:\n" + log.read_text(errors="replace")[-3000:])
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def sending_to(receiver_url: str) -> Iterator[str]:
    """This test process's SDK sends to the receiver for one test; the settings before come back after."""
    before = _pipeline.pipeline().settings
    flowledger.configure(endpoint=receiver_url, batch_max_age_s=0.05, export_spans=True)
    yield receiver_url
    flowledger.flush(timeout_s=5)
    _pipeline._create(before)


def _run_when(url: str, run_id: str, done: Any) -> dict[str, Any]:
    """The run as the receiver has it, once ``done(run)`` holds (polled; fails after RECORDS_TIMEOUT_S)."""
    deadline = time.monotonic() + RECORDS_TIMEOUT_S
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/runs/{run_id}", timeout=5)
        if answer.status_code == 200:
            run = answer.json()
            if done(run):
                return run
        time.sleep(0.1)
    pytest.fail(f"the receiver did not get the records in time; it has: {run}")


def _nodes(run: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    return sorted((n for n in run["nodes"] if n["node_id"] == node_id), key=lambda n: n["attempt"])


@pytest.mark.usefixtures("worker")
def test_a_task_sent_inside_a_run_is_a_node_of_that_run(sending_to: str) -> None:
    """The worker's attempt joins the publisher's run and trace, with its input, output and cost."""
    with flowledger.run("celery-order") as run:
        assert _celery_app.add.delay(2, 3).get(timeout=30) == 5
    flowledger.flush(timeout_s=5)
    stored = _run_when(sending_to, run.run_id, lambda r: r["status"] == "succeeded" and _nodes(r, "tests.add"))
    (attempt,) = _nodes(stored, "tests.add")
    assert attempt["status"] == "succeeded"
    assert attempt["input"] == {"args": [2, 3], "kwargs": {}}
    assert attempt["output"] == 5
    assert stored["trace_id"] == run.trace_id


@pytest.mark.usefixtures("worker")
def test_retries_are_attempts_and_failures_fail_the_attempt(sending_to: str) -> None:
    """A task Celery retried twice has failed attempts 1 and 2 and a succeeded 3; a failing task fails its attempt."""
    with flowledger.run("celery-retries") as run:
        assert _celery_app.flaky.delay(4).get(timeout=30) == 40
        with pytest.raises(KeyError):
            _celery_app.broken.delay(9).get(timeout=30)
    flowledger.flush(timeout_s=5)
    stored = _run_when(
        sending_to, run.run_id, lambda r: len(_nodes(r, "tests.flaky")) == 3 and _nodes(r, "tests.broken")
    )
    assert [(n["attempt"], n["status"]) for n in _nodes(stored, "tests.flaky")] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert _nodes(stored, "tests.flaky")[0]["error"]["type"] == "ValueError"
    (broken,) = _nodes(stored, "tests.broken")
    assert (broken["status"], broken["error"]["type"]) == ("failed", "KeyError")


@pytest.mark.usefixtures("worker")
def test_tasks_sent_from_a_task_nest_under_it(sending_to: str) -> None:
    """Tasks a task sends run concurrently on the worker's processes, in the same run, children of the sender."""
    with flowledger.run("celery-fan-out") as run:
        assert _celery_app.fan_out.delay(4).get(timeout=60) == [0, 2, 4, 6]
    flowledger.flush(timeout_s=5)
    stored = _run_when(
        sending_to, run.run_id, lambda r: len(_nodes(r, "tests.add")) == 4 and _nodes(r, "tests.fan_out")
    )
    (parent,) = _nodes(stored, "tests.fan_out")
    children = _nodes(stored, "tests.add")
    assert {c["output"] for c in children} == {0, 2, 4, 6}
    parents = _span_parents(sending_to, run.trace_id, {c["span_id"] for c in children} | {parent["span_id"]})
    assert {parents[c["span_id"]] for c in children} == {parent["span_id"]}
    assert parents[parent["span_id"]] == stored_run_span(sending_to, run.trace_id)


def _span_parents(url: str, trace_id: str, wanted: set[str]) -> dict[str, str | None]:
    """span id -> parent span id of the trace's spans, once all of ``wanted`` are stored (polled)."""
    deadline = time.monotonic() + RECORDS_TIMEOUT_S
    parents: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/traces/{trace_id}", timeout=5)
        if answer.status_code == 200:
            parents = {s["span_id"]: s.get("parent_span_id") for s in answer.json()["spans"]}
            if wanted <= parents.keys():
                return parents
        time.sleep(0.1)
    pytest.fail(f"the receiver did not get the spans in time; it has: {parents}")


def stored_run_span(url: str, trace_id: str) -> str:
    """The span id of the run's own span in the trace (the one with no parent)."""
    spans = httpx.get(f"{url}/api/traces/{trace_id}", timeout=5).json()["spans"]
    (root,) = [s["span_id"] for s in spans if not s.get("parent_span_id")]
    return str(root)


@pytest.mark.usefixtures("worker")
def test_a_task_sent_outside_any_run_is_a_run_of_its_own(sending_to: str) -> None:
    """Without a run to join, the worker records the task as a run of its own, named after the task."""
    result = _celery_app.add.delay(20, 22)
    assert result.get(timeout=30) == 42
    deadline = time.monotonic() + RECORDS_TIMEOUT_S
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        runs = httpx.get(f"{sending_to}/api/runs", params={"workflow_id": "tests.add"}, timeout=5).json()["runs"]
        for summary in runs:
            run = httpx.get(f"{sending_to}/api/runs/{summary['run_id']}", timeout=5).json()
            if summary["status"] == "succeeded" and any(n["output"] == 42 for n in run["nodes"]):
                found.append(run)
        time.sleep(0.1)
    assert found, "the worker's own run of tests.add did not reach the receiver"
    (attempt,) = found[0]["nodes"]
    assert attempt["input"] == {"args": [20, 22], "kwargs": {}}
