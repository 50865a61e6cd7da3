"""The celery executor on a real Redis and two real Celery worker processes: nodes behave as locally, and
every attempt is recorded from the worker where it ran, under the run's trace, even when its worker is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowledger
from flowledger._wire import RunStatus
from flowledger.instrument._pipeline import _create, pipeline
from flowledger.receiver._config import ReceiverConfig
from flowledger.workflow import Call, Limits, Map, Node, Retry, RunResult, Workflow, execute_run
from flowledger.workflow.executors._celery import CeleryExecutor
from tests._redis import REDIS_MISSING, redis_binary, redis_server
from tests._serve import serve_receiver
from tests.workflow.executors._cluster import ROOT, celery_workers, worker_env

pytestmark = pytest.mark.skipif(redis_binary() is None, reason=REDIS_MISSING)

NODES = "tests.workflow.executors.remote_nodes"
POLL_TIMEOUT_S = 30.0


def call(name: str) -> Call:
    return Call(NODES, name)


@dataclass
class Setup:
    receiver_url: str
    db_path: Path
    redis_url: str
    queue: str
    executor: CeleryExecutor

    def get(self, path: str) -> Any:
        return httpx.get(self.receiver_url + path, timeout=30).json()

    def producers(self, run_id: str, kind: str) -> list[tuple[str, str | None]]:
        """``(producer id, node id)`` of each stored event of ``kind`` in a run: which process recorded it."""
        with sqlite3.connect(self.db_path) as db:
            rows = db.execute(
                "SELECT p.body FROM ledger l JOIN payloads p ON p.seq = l.seq WHERE l.run_id = ? AND l.kind = ?",
                (run_id, kind),
            ).fetchall()
        events = [json.loads(body) for (body,) in rows]
        return [(event["producer_id"], event["data"].get("node_id")) for event in events]

    def run_record(self, run_id: str, nodes: int) -> dict[str, Any]:
        """The run as the receiver has it, once it has ended and holds ``nodes`` finished attempts."""
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while True:
            run = self.get(f"/api/runs/{run_id}")
            done = [n for n in run.get("nodes", []) if n["status"] != "running"]
            if run.get("status") not in (None, "running") and len(done) >= nodes:
                return dict(run)
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} never completed in the receiver: {run}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Redis, a receiver, two Celery workers of two pool processes each, and this process sending to the receiver."""
    tmp = tmp_path_factory.mktemp("celery")
    url, server, thread = serve_receiver(ReceiverConfig(db_path=tmp / "ledger.db"))
    before = pipeline().settings
    with redis_server(tmp) as redis_url:
        env: dict[str, str] = {
            "FLOWLEDGER_ENDPOINT": url,
            "FLOWLEDGER_SPOOL_DIR": str(tmp / "worker-spool"),
            "FLOWLEDGER_EXPORT_SPANS": "1",
        }
        with celery_workers(redis_url, count=2, concurrency=2, log=tmp, env=env) as cluster:
            flowledger.configure(endpoint=url, export_spans=True, spool_dir=tmp / "spool")
            executor = CeleryExecutor(redis_url, queue=cluster.queue, lost_after_s=10.0)
            try:
                yield Setup(url, tmp / "ledger.db", redis_url, cluster.queue, executor)
            finally:
                flowledger.shutdown(1.0)
                _create(before)
    server.should_exit = True
    thread.join(10)


def _run(workflow: Workflow, payload: Any, executor: Any, **kwargs: Any) -> RunResult:
    result = asyncio.run(execute_run(workflow, payload, executor=executor, **kwargs))
    flowledger.flush(5.0)
    return result


def _error_type(node: dict[str, Any]) -> str | None:
    """The error type of a node attempt without its module (``flowledger.NodeLost`` -> ``NodeLost``)."""
    error = node.get("error")
    return str(error["type"]).rpartition(".")[2] if error else None


def _statuses(run: dict[str, Any]) -> list[tuple[str, int, int | None, str]]:
    return sorted((n["node_id"], n["attempt"], n.get("item"), n["status"]) for n in run["nodes"])


def test_nodes_behave_as_locally_and_run_on_the_workers(setup: Setup, tmp_path: Path) -> None:
    """map, when, retries, an effect in a dry run: same outputs and records as local; items ran in worker processes."""

    def workflow(marker: Path) -> Workflow:
        return Workflow(
            id="celery-behaviour",
            nodes=(
                Node(id="items", call=call("identity")),
                Node(id="squares", call=call("square"), needs=("items",), map=Map(max_concurrency=4)),
                Node(id="skipped", call=call("where"), needs=("items",), when=call("positive")),
                Node(
                    id="retried",
                    call=call("fail_until_marked"),
                    needs=("items",),
                    kwargs={"marker": str(marker)},
                    retry=Retry(attempts=2),
                ),
                Node(id="notify", call=call("effect"), needs=("squares", "retried"), effect=True),
            ),
            output="squares",
        )

    payload = [1, 2, 3, 4, 5, 6, 7, 8]
    local = _run(workflow(tmp_path / "local"), payload, "local", dry_run=True)
    remote = _run(workflow(tmp_path / "remote"), payload, setup.executor, dry_run=True)
    assert local.status is remote.status is RunStatus.SUCCEEDED
    assert [o["value"] for o in remote.output] == [o["value"] for o in local.output] == [i * i for i in payload]
    pids = {o["pid"] for o in remote.output}
    assert os.getpid() not in pids
    assert len(pids) >= 2  # the map was shared by several worker processes
    assert remote.run_id is not None
    assert local.run_id is not None
    expected_attempts = len(payload) + 1 + 2 + 1 + 1
    remote_run = setup.run_record(remote.run_id, expected_attempts)
    local_run = setup.run_record(local.run_id, expected_attempts)
    assert _statuses(remote_run) == _statuses(local_run)
    assert ("retried", 1, None, "failed") in _statuses(remote_run)
    assert ("skipped", 1, None, "skipped") in _statuses(remote_run)
    # the attempts were recorded by the workers' own senders; the run, and the skip it decided, by this process
    here = pipeline().producer_id
    assert {producer for producer, _ in setup.producers(remote.run_id, "run_finished")} == {here}
    nodes = setup.producers(remote.run_id, "node_finished")
    assert {producer for producer, node_id in nodes if node_id == "skipped"} == {here}
    workers = {producer for producer, node_id in nodes if node_id != "skipped"}
    assert here not in workers
    assert len(workers) >= 2
    # every attempt is a span of the run's trace, made on the worker that ran it
    trace = setup.get(f"/api/traces/{remote_run['trace_id']}")
    span_ids = {s["span_id"] for s in trace["spans"]}
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not {n["span_id"] for n in remote_run["nodes"]} <= span_ids and time.monotonic() < deadline:
        time.sleep(0.1)
        span_ids = {s["span_id"] for s in setup.get(f"/api/traces/{remote_run['trace_id']}")["spans"]}
    assert {n["span_id"] for n in remote_run["nodes"]} <= span_ids


def test_timeouts_and_budgets_hold_on_the_workers(setup: Setup) -> None:
    """timeout_s cuts each attempt on the worker (and is retried); a cost reported there aborts the run past budget."""
    timing_out = Workflow(
        id="celery-timeout",
        nodes=(
            Node(
                id="slow",
                call=call("slow"),
                kwargs={"delay_s": 1.5},
                timeout_s=0.2,
                retry=Retry(attempts=2),
            ),
        ),
        output="slow",
    )
    result = _run(timing_out, 1, setup.executor)
    assert result.status is RunStatus.FAILED
    assert type(result.error).__name__ == "NodeTimeout"
    assert result.run_id is not None
    run = setup.run_record(result.run_id, 2)
    assert [(n["attempt"], n["status"], n["error"]["type"].rpartition(".")[2]) for n in run["nodes"]] == [
        (1, "failed", "NodeTimeout"),
        (2, "failed", "NodeTimeout"),
    ]

    over_budget = Workflow(
        id="celery-budget",
        nodes=(
            Node(id="spend", call=call("spend"), kwargs={"usd": 1.0}),
            Node(id="after", call=call("where"), needs=("spend",)),
        ),
        output="after",
        limits=Limits(budget_usd=0.5),
    )
    result = _run(over_budget, 1, setup.executor)
    assert result.status is RunStatus.ABORTED
    assert result.run_id is not None
    run = setup.run_record(result.run_id, 2)
    assert run["status"] == "aborted"
    assert run["cost"]["usd"] == pytest.approx(1.0)
    assert [(n["node_id"], n["status"]) for n in run["nodes"]] == [("spend", "succeeded"), ("after", "skipped")]


def test_a_worker_killed_mid_node_is_recorded_failed_and_the_node_retried(setup: Setup, tmp_path: Path) -> None:
    """SIGKILL the worker process running an attempt: that attempt is recorded failed (NodeLost), the retry succeeds."""
    marker = tmp_path / "pid"
    workflow = Workflow(
        id="celery-killed",
        nodes=(Node(id="hang", call=call("hang_once"), kwargs={"marker": str(marker)}, retry=Retry(attempts=2)),),
        output="hang",
    )
    outcome: list[RunResult] = []
    runner = threading.Thread(target=lambda: outcome.append(_run(workflow, "x", setup.executor)))
    runner.start()
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the node never started on a worker"
        time.sleep(0.02)
    victim = int(marker.read_text())
    time.sleep(0.6)  # long enough for the worker to have sent the attempt's node_started
    os.kill(victim, signal.SIGKILL)
    runner.join(POLL_TIMEOUT_S)
    assert outcome, "the run did not end"
    result = outcome[0]
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output["pid"] != victim
    assert result.run_id is not None
    run = setup.run_record(result.run_id, 2)
    attempts = [
        (n["attempt"], n["status"], (n["error"] or {}).get("type", "").rpartition(".")[2] or None) for n in run["nodes"]
    ]
    assert attempts == [(1, "failed", "NodeLost"), (2, "succeeded", None)]
    assert "WorkerLostError" in run["nodes"][0]["error"]["message"]


def test_a_generated_module_picks_the_executor_at_run_time(setup: Setup, tmp_path: Path) -> None:
    """The same generated file runs on celery with --executor celery (or FLOWLEDGER_EXECUTOR); a bad name exits 2."""
    from flowledger.codegen import generate

    definition = tmp_path / "wf.yaml"
    definition.write_text(
        "flowledger: 1\n"
        "workflow: {id: celery-cli}\n"
        "nodes:\n"
        f"  - {{id: each, call: '{NODES}:square', map: {{max_concurrency: 2}}}}\n"
    )
    module = tmp_path / "wf.py"
    module.write_text(generate(definition))
    env = worker_env(setup.redis_url, setup.queue, FLOWLEDGER_ENDPOINT=setup.receiver_url)
    command = [sys.executable, str(module), "--input", "[2, 3]"]
    done = subprocess.run([*command, "--executor", "celery"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert [o["value"] for o in output] == [4, 9]
    assert all(o["pid"] != done.returncode for o in output)
    by_env = subprocess.run(
        command, env={**env, "FLOWLEDGER_EXECUTOR": "celery"}, capture_output=True, text=True, timeout=60
    )
    assert by_env.returncode == 0, by_env.stderr
    bad = subprocess.run([*command, "--executor", "nope"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "'nope' is not an executor" in bad.stderr
    assert str(uuid.UUID(int=0)) not in bad.stderr
    assert ROOT.exists()


def test_a_whole_worker_lost_with_no_answer_is_given_up_after_its_timeout(setup: Setup, tmp_path: Path) -> None:
    """SIGKILL a worker and its pool process (a machine gone): no answer ever comes, so past timeout_s plus
    lost_after_s the attempt is recorded failed (NodeLost) and retried on the worker that is left. Runs last."""
    marker = tmp_path / "pid"
    impatient = CeleryExecutor(setup.redis_url, queue=setup.queue, lost_after_s=0.5)
    workflow = Workflow(
        id="celery-machine-gone",
        nodes=(
            Node(
                id="hang",
                call=call("hang_once"),
                kwargs={"marker": str(marker), "hang_s": 5.0},
                timeout_s=3.0,
                retry=Retry(attempts=2),
            ),
        ),
        output="hang",
    )
    outcome: list[RunResult] = []
    runner = threading.Thread(target=lambda: outcome.append(_run(workflow, "y", impatient)))
    runner.start()
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the node never started on a worker"
        time.sleep(0.02)
    child = int(marker.read_text())
    parent = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(parent, signal.SIGKILL)
    os.kill(child, signal.SIGKILL)
    runner.join(POLL_TIMEOUT_S)
    assert outcome, "the run did not end"
    result = outcome[0]
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.run_id is not None
    run = setup.run_record(result.run_id, 2)
    assert [(n["attempt"], n["status"], _error_type(n)) for n in run["nodes"]] == [
        (1, "failed", "NodeLost"),
        (2, "succeeded", None),
    ]
    assert "no answer" in run["nodes"][0]["error"]["message"]


def _calls(path: Path) -> int:
    """How many times a counted node ran (one line each)."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_resume_on_the_workers_does_not_repeat_an_effect_that_succeeded(setup: Setup, tmp_path: Path) -> None:
    """Resumed from the effect's node: the worker's guard sees the recorded effect (same input, same key), so the
    attempt is recorded as a duplicate returning the recorded output and the effect is not called again."""
    from flowledger.workflow._resume import fetch_evidence, plan_resume

    calls = tmp_path / "calls"
    workflow = Workflow(
        id="celery-resume-effect",
        nodes=(
            Node(id="charge", call=call("counted_effect"), kwargs={"calls": str(calls)}, effect=True),
            Node(id="after", call=call("fail_until_marked"), needs=("charge",), kwargs={"marker": str(tmp_path / "m")}),
        ),
        output="after",
    )
    failed = _run(workflow, "order-1", setup.executor)
    assert failed.status is RunStatus.FAILED
    assert failed.run_id is not None
    setup.run_record(failed.run_id, 2)
    assert _calls(calls) == 1
    plan = plan_resume(workflow, fetch_evidence(setup.receiver_url, failed.run_id), from_node="charge")
    assert "charge" in plan.rerun
    assert "charge" in plan.effects
    resumed = _run(workflow, None, setup.executor, resume=plan)
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert resumed.output["value"] == {"sent": "order-1"}
    assert _calls(calls) == 1  # not called again
    assert resumed.run_id is not None
    run = setup.run_record(resumed.run_id, 2)
    (charge,) = [n for n in run["nodes"] if n["node_id"] == "charge"]
    assert (charge["status"], charge["duplicate"]) == ("succeeded", True)


def test_an_output_that_is_not_json_fails_its_attempt_on_the_worker(setup: Setup, tmp_path: Path) -> None:
    """A node returning a set: its attempt is recorded failed by the worker ("output is not JSON"), the run fails with
    that error (not NodeLost), and an effect that did so is not run again by its retries."""
    calls = tmp_path / "calls"
    workflow = Workflow(
        id="celery-not-json",
        nodes=(
            Node(
                id="s",
                call=call("counted_set"),
                kwargs={"calls": str(calls)},
                effect=True,
                retry=Retry(attempts=3, backoff_s=0.01),
            ),
        ),
        output="s",
    )
    result = _run(workflow, 1, setup.executor)
    assert result.status is RunStatus.FAILED
    assert type(result.error).__name__ == "RemoteNodeError"
    assert "not sent: the effect ran in attempt 1, whose output is not JSON" in str(result.error)
    assert _calls(calls) == 1  # the effect ran once, and was not sent again
    assert result.run_id is not None
    run = setup.run_record(result.run_id, 3)
    attempts = [(n["attempt"], n["status"], _error_type(n)) for n in run["nodes"]]
    assert attempts == [(1, "failed", "TypeError"), (2, "failed", "RemoteNodeError"), (3, "failed", "RemoteNodeError")]
    assert "output is not JSON" in run["nodes"][0]["error"]["message"]
    assert "NodeLost" not in json.dumps(run["nodes"])

    plain = Workflow(
        id="celery-not-json-plain",
        nodes=(Node(id="s", call=call("counted_set"), kwargs={"calls": str(calls)}),),
        output="s",
    )
    result = _run(plain, 2, setup.executor)
    assert result.status is RunStatus.FAILED
    assert "output is not JSON" in str(result.error)
    assert result.run_id is not None
    (attempt,) = setup.run_record(result.run_id, 1)["nodes"]
    assert (attempt["status"], _error_type(attempt)) == ("failed", "TypeError")
