"""The Prefect adapter against real Prefect 3 flows and tasks on its local ephemeral server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import pytest

import flowledger
from flowledger.testing import CapturedEvents

pytest.importorskip("prefect", reason="the Prefect adapter's tests need flowledger[prefect]")

from prefect import flow, task

from flowledger.adapters.prefect import flow_traceparent, instrument

SERVER_STARTUP_TIMEOUT_S: Final = 120
"""How long Prefect's ephemeral server may take to start: its default 30 s runs out on a loaded CI machine."""

# The server starts in the module's fixture, bounded by that; each test's own time limit covers its body only.
pytestmark = pytest.mark.timeout(func_only=True)


@pytest.fixture(scope="module", autouse=True)
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Prefect home of its own, with the ephemeral local server (no API URL), for this module."""
    home = tmp_path_factory.mktemp("prefect-home")
    saved = {name: os.environ.get(name) for name in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_LOGGING_LEVEL")}
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=SERVER_STARTUP_TIMEOUT_S):
        yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


_calls: dict[str, int] = {"flaky": 0}


@instrument
@task(retries=2)
def flaky(x: int) -> int:
    _calls["flaky"] += 1
    flowledger.cost(tokens=5, usd=0.01)
    if _calls["flaky"] < 2:
        raise ValueError("first attempt fails")
    return x * 2


@instrument
@task
def add(a: int, b: int) -> int:
    return a + b


@instrument
@task
def broken(x: int) -> int:
    raise KeyError(f"no price for {x}")


@instrument
@flow
def inner(v: int) -> int:
    return add(v, 1)


@instrument
@flow
def outer(x: int) -> int:
    futures = [add.submit(i, 10) for i in range(3)]
    y = flaky(x)
    return inner(y) + sum(f.result() for f in futures)


@instrument
@flow
def failing(x: int) -> int:
    return broken(x)


SETTLE_TIMEOUT_S: Final = 30.0
"""How long the hooks of a finished flow's tasks may take to report (polled, not measured)."""
OUTER_ATTEMPTS: Final = 7
"""Attempts one outer(3) records: three submitted adds, two of flaky, the subflow and its add."""


def _settled(events: CapturedEvents, workflow_id: str, attempts: int) -> str:
    """The run id of ``workflow_id``'s run, once it finished and ``attempts`` whole attempts of it were recorded.

    Prefect calls a task's completion hook after it set the task's state, so a
    flow can return (and its run finish) while the hooks of tasks it submitted
    still run: their records come shortly after. An attempt that ran longer
    than ``node_start_delay_s`` (a subflow, or any attempt on a loaded
    machine) keeps its input in its ``node_started``, which the SDK's timer
    thread may emit even after its ``node_finished``: an attempt is whole once
    its input is recorded in either.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        runs = [e["run_id"] for e in events.runs() if e["data"]["workflow_id"] == workflow_id]
        if runs:
            found = _by_node(events, None, runs[0])
            if len(found) >= attempts and all("input" in d for d in found):
                return str(runs[0])
        if time.monotonic() > deadline:
            pytest.fail(f"{workflow_id}: expected a run with {attempts} attempts, captured {events.all}")
        time.sleep(0.02)


def _by_node(events: CapturedEvents, node_id: str | None, run_id: str) -> list[dict[str, Any]]:
    """The run's attempts (of ``node_id`` only, if given) as the receiver assembles them.

    Each is its ``node_finished`` record, with the input and attributes of its
    ``node_started`` when the attempt was long enough to send one.
    """
    started = {e["data"]["span_id"]: e["data"] for e in events.of_kind("node_started") if e["run_id"] == run_id}
    found = []
    for event in events.nodes(node_id):
        if event["run_id"] != run_id:
            continue
        data = dict(event["data"])
        for name, value in started.get(data["span_id"], {}).items():
            if name in ("input", "attributes"):
                data.setdefault(name, value)
        found.append(data)
    return found


def test_a_flow_is_a_run_and_its_task_runs_are_node_attempts(events: CapturedEvents) -> None:
    """A flow run records a run with its parameters and result; each task run is an attempt with input and output."""
    _calls["flaky"] = 0
    assert outer(3) == 7 + 10 + 11 + 12
    run_id = _settled(events, "outer", OUTER_ATTEMPTS)
    (started,) = [e for e in events.of_kind("run_started") if e["run_id"] == run_id]
    (finished,) = [e for e in events.runs() if e["run_id"] == run_id]
    assert started["data"]["workflow_id"] == "outer"
    assert started["data"]["trigger_data"] == {"x": 3}
    assert finished["data"]["status"] == "succeeded"
    assert finished["data"]["output"] == 40
    assert len(_by_node(events, None, run_id)) == OUTER_ATTEMPTS
    adds = sorted(_by_node(events, "add", run_id), key=lambda d: d["input"]["a"])
    assert [(d["input"], d["output"], d["status"]) for d in adds] == [
        ({"a": 0, "b": 10}, 10, "succeeded"),
        ({"a": 1, "b": 10}, 11, "succeeded"),
        ({"a": 2, "b": 10}, 12, "succeeded"),
        ({"a": 6, "b": 1}, 7, "succeeded"),
    ]


def test_retries_are_attempts_numbered_as_prefect_counts_them(events: CapturedEvents) -> None:
    """A task Prefect retried records a failed attempt 1 with its exception, then attempt 2; cost adds up."""
    _calls["flaky"] = 0
    outer(3)
    run_id = _settled(events, "outer", OUTER_ATTEMPTS)
    first, second = sorted(_by_node(events, "flaky", run_id), key=lambda d: d["attempt"])
    assert (first["attempt"], first["status"], first["error"]["type"]) == (1, "failed", "ValueError")
    assert first["error"]["message"] == "first attempt fails"
    assert (second["attempt"], second["status"], second["output"]) == (2, "succeeded", 6)
    assert first["cost"]["tokens"] == second["cost"]["tokens"] == 5
    (run,) = [e for e in events.runs() if e["run_id"] == run_id]
    assert run["data"]["cost"]["tokens"] == 10


def test_a_subflow_is_a_node_with_its_tasks_nested_under_it(events: CapturedEvents) -> None:
    """The subflow is a node of the outer run, and its task's span is a child of the subflow's span."""
    _calls["flaky"] = 0
    outer(3)
    run_id = _settled(events, "outer", OUTER_ATTEMPTS)
    (sub,) = _by_node(events, "inner", run_id)
    (started,) = [e["data"] for e in events.of_kind("run_started") if e["run_id"] == run_id]
    assert sub["parent_span_id"] == started["span_id"]
    assert sub["input"] == {"v": 6}
    nested = [d for d in _by_node(events, "add", run_id) if d["parent_span_id"] == sub["span_id"]]
    assert [d["input"] for d in nested] == [{"a": 6, "b": 1}]
    assert {d["trace_id"] for d in _by_node(events, None, run_id)} == {started["trace_id"]}


def test_a_failed_task_fails_its_attempt_and_the_run(events: CapturedEvents) -> None:
    """A task that raises fails its attempt with the exception, and the flow's run fails naming that node."""
    with pytest.raises(KeyError):
        failing(5)
    run_id = _settled(events, "failing", 1)
    (attempt,) = _by_node(events, "broken", run_id)
    assert attempt["status"] == "failed"
    assert attempt["error"]["type"] == "KeyError"
    (run,) = [e for e in events.runs() if e["run_id"] == run_id]
    assert run["data"]["status"] == "failed"
    assert run["data"]["error"]["type"] == "KeyError"


def test_a_task_outside_an_instrumented_flow_is_a_run_of_its_own(events: CapturedEvents) -> None:
    """A task run whose flow is not instrumented still records itself, as a run named after the task."""

    @flow
    def plain() -> int:
        return add(1, 2)

    assert plain() == 3
    run_id = _settled(events, "add", 1)
    (attempt,) = _by_node(events, "add", run_id)
    assert attempt["attributes"]["prefect.flow_run_id"]
    assert attempt["output"] == 3


@instrument
@task(retries=1)
async def fetch_async(key: str) -> str:
    _calls[key] = _calls.get(key, 0) + 1
    flowledger.cost(external_requests=1)
    if _calls[key] == 1:
        raise ConnectionError(f"{key}: no answer")
    return key.upper()


@instrument
@flow
async def gather_async(keys: list[str]) -> list[Any]:
    futures = [fetch_async.submit(key) for key in keys]
    return [f.result() for f in futures]


# Prefect's client leaves a socket of the event loop that asyncio.run() closes to the garbage collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_async_flows_and_tasks_are_recorded_the_same_way(events: CapturedEvents) -> None:
    """An async flow's submitted async tasks are attempts of its run, each retried once, with cost inside."""
    import asyncio

    assert asyncio.run(gather_async(["a", "b"])) == ["A", "B"]
    run_id = _settled(events, "gather-async", 4)
    attempts = sorted((d["input"]["key"], d["attempt"], d["status"]) for d in _by_node(events, "fetch_async", run_id))
    assert attempts == [("a", 1, "failed"), ("a", 2, "succeeded"), ("b", 1, "failed"), ("b", 2, "succeeded")]
    (run,) = [e for e in events.runs() if e["run_id"] == run_id]
    assert run["data"]["cost"]["external_requests"] == 4


def test_instrument_takes_flows_and_tasks_only_and_is_idempotent() -> None:
    """instrument() refuses what is not a flow or task, and instrumenting twice adds the hooks once."""
    with pytest.raises(TypeError, match="Prefect flow or task"):
        instrument(len)  # type: ignore[type-var]
    before = len(add.on_running_hooks)
    assert instrument(add) is add
    assert len(add.on_running_hooks) == before


def test_the_prefect_example_records_its_flow(events: CapturedEvents) -> None:
    """examples/adapters/prefect_flow.py runs: one run, a fetch, and price attempts with the retried one failed."""
    from tests.adapters._examples import load_example

    assert load_example("prefect_flow").order_intake("A-1") == 6.0
    run_id = _settled(events, "order-intake", 4)
    (run,) = [e for e in events.runs() if e["run_id"] == run_id]
    assert run["data"]["status"] == "succeeded"
    prices = _by_node(events, "price", run_id)
    assert sorted(d["status"] for d in prices) == ["failed", "succeeded", "succeeded"]
    assert run["data"]["cost"]["external_requests"] == 3


@pytest.fixture
def receiver_for_workers(tmp_path: Path) -> Iterator[str]:
    """A real receiver that this process and the processes it spawns send their records to, for one test."""
    from flowledger.instrument import _pipeline
    from flowledger.receiver._config import ReceiverConfig
    from tests._serve import serve_receiver

    url, server, thread = serve_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db", sweep_interval_s=0))
    saved = {name: os.environ.get(name) for name in ("FLOWLEDGER_ENDPOINT", "FLOWLEDGER_EXIT_FLUSH_S")}
    os.environ["FLOWLEDGER_ENDPOINT"] = url  # spawned workers read their settings from the environment
    os.environ["FLOWLEDGER_EXIT_FLUSH_S"] = "10"
    before = _pipeline.pipeline().settings
    flowledger.configure(endpoint=url, batch_max_age_s=0.05)
    try:
        yield url
    finally:
        flowledger.flush(timeout_s=5)
        _pipeline._create(before)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.should_exit = True
        thread.join(timeout=10)


def test_task_runs_in_another_process_continue_the_flows_run(receiver_for_workers: str) -> None:
    """Tasks Prefect runs in a spawned process are attempts of the flow's run (its flow run id), in its trace."""
    import httpx

    from tests.adapters._prefect_pool import pooled

    outputs = pooled(2)
    assert {o["pid"] for o in outputs} != {os.getpid()}
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        listed = httpx.get(f"{receiver_for_workers}/api/runs", params={"workflow_id": "pooled"}, timeout=5).json()
        if listed["runs"]:
            run = httpx.get(f"{receiver_for_workers}/api/runs/{listed['runs'][0]['run_id']}", timeout=5).json()
            if run["status"] == "succeeded" and len([n for n in run["nodes"] if n["status"] == "succeeded"]) == 2:
                break
        time.sleep(0.1)
    else:
        pytest.fail(f"the flow's run and its two attempts did not reach the receiver: {run}")
    assert sorted(n["output"]["x"] for n in run["nodes"]) == [0, 1]
    assert {n["output"]["pid"] for n in run["nodes"]} == {o["pid"] for o in outputs}
    flow_run_id = UUID(run["run_id"])  # the flow's run goes by its Prefect flow run id
    assert run["trace_id"] == flow_run_id.hex == flow_traceparent(flow_run_id).split("-")[1]
