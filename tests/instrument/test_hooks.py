"""Run and node hooks: what a run and each node attempt record."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
import pytest

import flowledger
from flowledger._wire import event_schema
from flowledger.testing import CapturedEvents


def _closed(schema: Any) -> Any:
    """The schema with every object of the kinds' data closed: a field the SDK sends must be declared.

    The published schema lets receivers accept fields of newer producers; the
    SDK's own events are held to the declared fields, so a field added to the
    records but not to the wire format (and so to nothing downstream) fails here.
    """
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def _closed_data(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "$defs": _closed(schema["$defs"])}


validate_event = fastjsonschema.compile(_closed_data(event_schema()))


@flowledger.node
def add(a: int, b: int) -> int:
    return a + b


@flowledger.node(id="boom")
def explode(order: dict[str, Any]) -> None:
    raise ValueError(f"cannot price {order['sku']}")


@flowledger.node
async def slow_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def kinds(events: CapturedEvents) -> list[str]:
    return [e["kind"] for e in events]


def test_run_records_start_and_finish_with_workflow_fields(events: CapturedEvents) -> None:
    """A run emits run_started then run_finished carrying workflow, trigger, status and trace."""
    with flowledger.run("order-intake", name="Order intake", version="3", trigger="http", data={"id": 7}) as run:
        add(1, 2)
    assert kinds(events) == ["run_started", "node_finished", "run_finished"]
    started, finished = events.of_kind("run_started")[0], events.runs()[0]
    assert started["run_id"] == finished["run_id"] == run.run_id
    assert started["data"]["workflow_id"] == "order-intake"
    assert started["data"]["workflow_name"] == "Order intake"
    assert started["data"]["workflow_version"] == "3"
    assert started["data"]["trigger_type"] == "http"
    assert started["data"]["trigger_data"] == {"id": 7}
    assert started["data"]["trace_id"] == run.trace_id
    assert finished["data"]["status"] == "succeeded"
    assert finished["data"]["error"] is None
    assert [e["seq"] for e in events] == [0, 1, 2]


def test_every_event_follows_the_published_schema(events: CapturedEvents) -> None:
    """Events of runs, nodes, failures, skips and heartbeats validate against events.v1.schema.json, closed."""
    with pytest.raises(ValueError), flowledger.run("wf", data=b"\x00raw") as run:
        add(1, 2)
        flowledger.instrument.record_skip("later", "an upstream node failed")
        run.heartbeat()
        explode({"sku": "A1"})
    assert len(events) == 6
    for event in events:
        validate_event(event)


def test_an_undeclared_field_fails_the_closed_schema(events: CapturedEvents) -> None:
    """A node record carrying a field the wire format does not declare is refused by the schema the SDK is held to."""
    with flowledger.run("wf"):
        add(1, 2)
    node = next(e for e in events if e["kind"] == "node_finished")
    node["data"]["not_declared"] = 1
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validate_event(node)


def test_node_records_input_output_and_timing(events: CapturedEvents) -> None:
    """A short node attempt is one node_finished event: input as named arguments, output, start, duration."""
    with flowledger.run("wf"):
        assert add(2, b=5) == 7
    assert events.of_kind("node_started") == []
    finished = events.nodes("add")[0]["data"]
    assert finished["input"] == {"a": 2, "b": 5}
    assert finished["output"] == 7
    assert finished["status"] == "succeeded"
    assert finished["attempt"] == 1
    assert finished["duration_ms"] >= 0
    assert finished["started_at"].endswith("Z")


def test_a_long_node_is_announced_while_it_runs(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """A node still running after node_start_delay_s sends node_started (with its input) before it ends."""
    configure(node_start_delay_s=0.05)
    seen_while_running: list[str] = []

    @flowledger.node
    def slow(x: int) -> int:
        deadline, give_up = threading.Event(), time.monotonic() + 10.0  # bounded, however busy the machine
        while time.monotonic() < give_up:
            if events.of_kind("node_started"):
                break
            deadline.wait(0.01)
        seen_while_running.extend(e["kind"] for e in events)
        return x

    with flowledger.run("wf"):
        slow(3)
    assert "node_started" in seen_while_running
    started, finished = events.of_kind("node_started")[0]["data"], events.nodes("slow")[0]["data"]
    assert started["input"] == 3
    assert "input" not in finished
    assert started["span_id"] == finished["span_id"]


def test_zero_delay_announces_every_node(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """With node_start_delay_s=0 every attempt sends node_started then node_finished."""
    configure(node_start_delay_s=0)
    with flowledger.run("wf"):
        add(1, 2)
    assert kinds(events) == ["run_started", "node_started", "node_finished", "run_finished"]
    assert events.of_kind("node_started")[0]["data"]["input"] == {"a": 1, "b": 2}


def test_every_kind_of_node_record_names_its_attempt_the_same_way(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """node_started, node_finished and a skip record all carry the fields node_record declares."""
    configure(node_start_delay_s=0)
    where = flowledger.Location("wf.yaml", 3, "nodes[0]")
    with flowledger.run("wf", definition_sha256="ab" * 32):
        with flowledger.instrument.attempt("a", input=1, item=2, location=where, effect=True):
            pass
        flowledger.instrument.record_skip("b", "not needed", item=2, location=where)
    started, finished, skipped = (e["data"] for e in events.of_kind("node_started") + events.of_kind("node_finished"))
    shared = {"node_id", "span_id", "parent_span_id", "trace_id", "attempt", "item", "location", "definition_sha256"}
    for record in (started, finished, skipped):
        assert shared <= record.keys()
        assert (record["item"], record["location"]) == (2, where.as_dict())
        assert record["definition_sha256"] == "ab" * 32
    assert started["idempotency_key"] == finished["idempotency_key"]
    assert "effect" not in skipped


def test_failing_node_fails_the_run_and_names_the_node(events: CapturedEvents) -> None:
    """An exception from a node is recorded with type, message and stack, and the run names that node."""
    with pytest.raises(ValueError, match="cannot price A1"), flowledger.run("wf"):
        add(1, 1)
        explode({"sku": "A1"})
    node = events.nodes("boom")[0]["data"]
    assert node["status"] == "failed"
    assert node["error"]["type"] == "ValueError"
    assert node["error"]["message"] == "cannot price A1"
    assert "explode" in node["error"]["stack"]
    run = events.runs()[0]["data"]
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "boom"
    assert run["error"]["type"] == "ValueError"


def test_error_raised_outside_nodes_has_no_failing_node(events: CapturedEvents) -> None:
    """A run that fails in its own code (not in a node) records the error without a node id."""
    with pytest.raises(KeyError), flowledger.run("wf"):
        add(1, 1)
        raise KeyError("missing")
    assert events.runs()[0]["data"]["error"]["node_id"] is None


def test_async_run_and_async_node(events: CapturedEvents) -> None:
    """``async with flowledger.run`` and async nodes record like sync ones."""

    async def main() -> int:
        async with flowledger.run("async-wf"):
            return await slow_double(21)

    assert asyncio.run(main()) == 42
    assert events.nodes("slow_double")[0]["data"]["output"] == 42
    assert events.runs()[0]["data"]["status"] == "succeeded"


def test_nested_nodes_link_to_their_parent_span(events: CapturedEvents) -> None:
    """A node called inside another node is a child span of it in the same trace."""

    @flowledger.node
    def outer(x: int) -> int:
        return add(x, 1)

    with flowledger.run("wf") as run:
        outer(1)
    inner, out = events.nodes("add")[0]["data"], events.nodes("outer")[0]["data"]
    assert inner["parent_span_id"] == out["span_id"]
    assert out["parent_span_id"] == run.span_id
    assert inner["trace_id"] == out["trace_id"] == run.trace_id


def test_node_outside_a_run_records_a_run_of_its_own(events: CapturedEvents) -> None:
    """Called with no run open, a node still records itself as a one-node run."""
    assert add(3, 4) == 7
    assert kinds(events) == ["run_started", "node_finished", "run_finished"]
    assert events.of_kind("run_started")[0]["data"]["workflow_id"] == "add"
    assert events.runs()[0]["data"]["output"] == 7


def test_threads_attach_to_the_run_that_started_them(events: CapturedEvents) -> None:
    """in_context and ContextThreadPoolExecutor carry the run into threads."""
    with flowledger.run("wf") as run:
        thread = threading.Thread(target=flowledger.in_context(add), args=(1, 2))
        thread.start()
        thread.join()
        with flowledger.ContextThreadPoolExecutor(max_workers=2) as pool:
            assert pool.submit(add, 5, 5).result() == 10
    nodes = events.nodes("add")
    assert len(nodes) == 2
    assert {e["run_id"] for e in nodes} == {run.run_id}


def test_sixteen_threads_of_runs_lose_and_mix_nothing(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """16 threads each running runs concurrently: every event arrives, each in its own run."""
    configure(node_start_delay_s=3600.0)  # a node starved of the CPU for a moment is not announced: counts stay exact
    runs_per_thread, nodes_per_run = 10, 5
    run_ids: list[str] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for _ in range(runs_per_thread):
            with flowledger.run(f"thread-{worker}") as run:
                for i in range(nodes_per_run):
                    add(worker, i)
            with lock:
                run_ids.append(run.run_id)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(run_ids) == len(set(run_ids)) == 160
    by_run: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_run.setdefault(e["run_id"], []).append(e)
    assert set(by_run) == set(run_ids)
    for run_events in by_run.values():
        assert len(run_events) == 2 + nodes_per_run
        assert sorted(e["seq"] for e in run_events) == list(range(len(run_events)))
        worker = run_events[0]["data"]["workflow_id"].split("-")[1]
        for e in run_events:
            if e["kind"] == "node_finished":
                assert e["data"]["input"]["a"] == int(worker)
    producer_seqs = sorted(e["producer_seq"] for e in events)
    assert producer_seqs == list(range(producer_seqs[0], producer_seqs[0] + len(producer_seqs)))
    assert len({e["event_id"] for e in events}) == len(events)


def test_thousand_asyncio_tasks_attach_to_their_own_runs(events: CapturedEvents) -> None:
    """1,000 concurrent asyncio tasks, each in its own run, record every node in the right run."""

    async def one(i: int) -> tuple[str, int]:
        async with flowledger.run("tasks", data=i) as run:
            await slow_double(i)
            await asyncio.sleep(0)
            await slow_double(i + 1)
        return run.run_id, i

    async def main() -> list[tuple[str, int]]:
        return await asyncio.gather(*(one(i) for i in range(1000)))

    results = asyncio.run(main())
    expected = dict(results)
    assert len(expected) == 1000
    for e in events.nodes("slow_double"):
        i = expected[e["run_id"]]
        assert e["data"]["output"] in (2 * i, 2 * (i + 1))
    assert len(events.nodes("slow_double")) == 2000


def test_cost_adds_to_node_and_run(events: CapturedEvents) -> None:
    """flowledger.cost adds to the current node's and the run's totals."""

    @flowledger.node
    def ask(prompt: str) -> str:
        flowledger.cost(tokens=1200, tool_calls=2, external_requests=1, usd=0.004)
        return "ok"

    with flowledger.run("agent"):
        ask("a")
        ask("b")
    assert events.nodes("ask")[0]["data"]["cost"] == {
        "tokens": 1200,
        "tool_calls": 2,
        "external_requests": 1,
        "usd": 0.004,
        "breakdown": {
            "tokens": {"count": 1200, "usd_nanos": 0},
            "tool_calls": {"count": 2, "usd_nanos": 0},
            "external_requests": {"count": 1, "usd_nanos": 0},
            "other": {"count": 0, "usd_nanos": 4_000_000},
        },
    }
    total = events.runs()[0]["data"]["cost"]
    assert total["tokens"] == 2400
    assert total["usd"] == pytest.approx(0.008)


def test_cost_that_is_not_a_real_amount_is_ignored_not_recorded(events: CapturedEvents) -> None:
    """A NaN, infinite or negative cost is refused (counted once as an internal error); the record stays valid."""

    @flowledger.node
    def ask(usd: float) -> str:
        flowledger.cost(tokens=5, usd=usd)
        return "ok"

    with flowledger.run("agent"):
        for bad in (math.nan, math.inf, -1.0):
            assert ask(bad) == "ok"
        ask(0.5)
    costs = [e["data"].get("cost") for e in events.nodes("ask")]
    assert costs[:3] == [None, None, None]
    assert {k: v for k, v in costs[3].items() if k != "breakdown"} == {
        "tokens": 5,
        "tool_calls": 0,
        "external_requests": 0,
        "usd": 0.5,
    }
    assert events.runs()[0]["data"]["cost"]["usd"] == 0.5
    assert flowledger.stats()["internal_errors"] >= 3


def test_budget_aborts_the_run_at_the_next_node(events: CapturedEvents) -> None:
    """Past its budget a run raises RunAborted when the next node starts and ends aborted."""

    @flowledger.node
    def spend(usd: float) -> None:
        flowledger.cost(usd=usd)

    with pytest.raises(flowledger.RunAborted) as caught, flowledger.run("wf", budget_usd=0.5):
        spend(0.4)
        spend(0.4)
        spend(0.4)
    assert caught.value.reason == "budget"
    assert len(events.nodes("spend")) == 2
    run = events.runs()[0]["data"]
    assert run["status"] == "aborted"
    assert run["error"]["reason"] == "budget"


def test_deadline_aborts_the_run_at_the_next_node(events: CapturedEvents) -> None:
    """Past its deadline a run is aborted with the reason 'deadline' before the next node runs."""
    calls: list[int] = []

    @flowledger.node
    def step(i: int) -> None:
        calls.append(i)

    with pytest.raises(flowledger.RunAborted), flowledger.run("wf", deadline_s=1.0) as run:
        step(1)
        while remaining := run.remaining_s():
            time.sleep(remaining)
        step(2)
    assert calls == [1]
    assert events.runs()[0]["data"]["error"]["reason"] == "deadline"


class _LocalError(Exception):
    """An application's own exception."""


def test_error_types_name_flowledger_exceptions_by_their_public_name(events: CapturedEvents) -> None:
    """A RunAborted is recorded as flowledger.RunAborted, not by its private module; other types keep their path."""

    @flowledger.node
    def spend(usd: float) -> None:
        flowledger.cost(usd=usd)

    @flowledger.node
    def local() -> None:
        raise _LocalError("mine")

    with pytest.raises(flowledger.RunAborted), flowledger.run("wf", budget_usd=0.5):
        spend(0.75)
        spend(0.1)
    with pytest.raises(_LocalError), flowledger.run("wf2"):
        local()
    aborted, failed = (e["data"]["error"] for e in events.runs())
    assert aborted["type"] == "flowledger.RunAborted"
    assert failed["type"] == f"{__name__}._LocalError"
    assert events.nodes("local")[0]["data"]["error"]["type"] == f"{__name__}._LocalError"


def test_run_fail_marks_failure_without_raising(events: CapturedEvents) -> None:
    """run.fail() records a failed run with its failing node and lets the block finish."""
    with flowledger.run("wf") as run:
        run.fail(RuntimeError("downstream broke"), "notify")
    data = events.runs()[0]["data"]
    assert data["status"] == "failed"
    assert data["error"]["node_id"] == "notify"


def test_effect_is_simulated_in_a_dry_run(events: CapturedEvents) -> None:
    """In a dry run an effect node is recorded as simulated and its function never runs."""
    sent: list[str] = []

    @flowledger.node(effect=True)
    def send_mail(to: str) -> str:
        sent.append(to)
        return "sent"

    with flowledger.run("wf", dry_run=True):
        assert send_mail("a@example.org") is None
    with flowledger.run("wf"):
        assert send_mail("a@example.org") == "sent"
    assert sent == ["a@example.org"]
    dry, live = (e["data"] for e in events.nodes("send_mail"))
    assert dry["simulated"] is True
    assert "simulated" not in live
    assert dry["idempotency_key"] == live["idempotency_key"]
    assert len(dry["idempotency_key"]) == 64


def test_idempotency_guard_skips_a_repeated_effect(
    events: CapturedEvents, configure: Callable[..., Any], tmp_path: Any
) -> None:
    """With the guard on, an effect whose key already succeeded returns the recorded output as a duplicate."""
    configure(idempotency_guard=True, idempotency_dir=tmp_path)
    calls: list[int] = []

    @flowledger.node(effect=True)
    def charge(amount: int) -> dict[str, Any]:
        calls.append(amount)
        return {"charged": amount}

    with flowledger.run("billing"):
        first = charge(10)
    with flowledger.run("billing"):
        second = charge(10)
        charge(11)
    assert first == second == {"charged": 10}
    assert calls == [10, 11]
    records = [e["data"] for e in events.nodes("charge")]
    assert [r.get("duplicate", False) for r in records] == [False, True, False]


def test_an_effect_key_is_the_canonical_hash_within_the_limit_and_absent_past_it(events: CapturedEvents) -> None:
    """The key is the sha256 of the canonical JSON it always was; a huge input is not walked whole for one."""
    import hashlib
    from collections.abc import Iterator, Mapping

    from flowledger.instrument._effects import KEY_INPUT_LIMIT_BYTES

    touched: list[int] = []

    class Row(Mapping[str, int]):
        """A small mapping that counts how often it is read."""

        def __getitem__(self, key: str) -> int:
            return 1

        def __iter__(self) -> Iterator[str]:
            touched.append(1)
            return iter(("n",))

        def __len__(self) -> int:
            return 1

    @flowledger.node(effect=True)
    def send(batch: Any) -> int:
        return len(batch)

    small = {"to": "ann@example.org", "lines": [1.5, 2, None, "é"], "nested": {"b": 1, "a": [True]}}
    with flowledger.run("mail"):
        send(small)
        send(["x" * (KEY_INPUT_LIMIT_BYTES // 2)] * 3)
        assert send([Row() for _ in range(200_000)]) == 200_000
    keyed, over, rows = (e["data"] for e in events.nodes("send"))
    body = {"input": small, "node_id": "send", "workflow_id": "mail"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert keyed["idempotency_key"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    for data in (over, rows):
        assert data["effect"] is True
        assert "idempotency_key" not in data
        assert data["status"] == "succeeded"
    assert len(touched) < 1000  # the capture's preview reads a few rows; the key reads none


def test_an_effect_whose_key_cannot_be_made_is_still_recorded(events: CapturedEvents) -> None:
    """An input whose conversion raises: the effect runs and is recorded, as an effect without a key."""

    class Broken(dict[str, int]):
        def items(self) -> Any:
            raise RuntimeError("no items")

    @flowledger.node(effect=True)
    def charge(order: Any) -> str:
        return "charged"

    with flowledger.run("billing"):
        assert charge(Broken(a=1)) == "charged"
    data = events.nodes("charge")[0]["data"]
    assert (data["status"], data["effect"], data["output"]) == ("succeeded", True, "charged")
    assert "idempotency_key" not in data
    assert data["input"]["__flowledger__"] == "capture_error"


def test_secrets_in_error_messages_and_stacks_are_redacted(events: CapturedEvents) -> None:
    """A node's and its run's error message and stack hide secret pairs as captured logs do."""

    @flowledger.node
    def fetch(host: str, api_key: str) -> None:
        raise RuntimeError(f"GET https://{host}/x?api_key={api_key} failed (password=hunter2)")

    with pytest.raises(RuntimeError), flowledger.run("wf"):
        fetch("api.example.org", api_key="SECRETKEY123")
    node, run = events.nodes("fetch")[0]["data"], events.runs()[0]["data"]
    expected = "GET https://api.example.org/x?api_key=[REDACTED] failed (password=[REDACTED])"
    assert node["error"]["message"] == run["error"]["message"] == expected
    assert expected in node["error"]["stack"]
    assert expected in run["error"]["stack"]
    assert "SECRETKEY123" not in json.dumps(events.all)
    assert "hunter2" not in json.dumps(events.all)


def test_heartbeats_are_sent_while_a_run_is_open(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """A run that stays open sends heartbeat events at the configured interval."""
    configure(heartbeat_interval_s=0.02)
    done = threading.Event()
    with flowledger.run("slow"):
        give_up = time.monotonic() + 10.0  # two beats are 40 ms apart; a busy machine may take longer
        while len(events.of_kind("heartbeat")) < 2 and time.monotonic() < give_up:
            done.wait(0.02)
    beats = events.of_kind("heartbeat")
    assert len(beats) >= 2
    assert all(b["run_id"] == events.runs()[0]["run_id"] for b in beats)


def test_disabled_hooks_record_nothing(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """With disabled=True the code runs and nothing is recorded."""
    configure(disabled=True)
    with flowledger.run("wf"):
        assert add(1, 2) == 3
    assert len(events) == 0


def test_a_failing_sink_never_reaches_user_code(events: CapturedEvents) -> None:
    """A sink that raises is counted as an internal error; the workflow goes on."""
    from flowledger.instrument._pipeline import pipeline

    class Broken:
        def submit(self, event: dict[str, Any], size: int) -> None:
            raise OSError("disk full")

        def flush(self, timeout_s: float) -> bool:
            return True

        def shutdown(self, timeout_s: float) -> bool:
            return True

    broken = Broken()
    pipeline().add_capture(broken, deliver=False)
    try:
        before = flowledger.stats()["internal_errors"]
        with flowledger.run("wf"):
            assert add(1, 2) == 3
        assert flowledger.stats()["internal_errors"] > before
    finally:
        pipeline().remove_capture(broken)


def test_unserialisable_input_is_marked_not_fatal(events: CapturedEvents) -> None:
    """A node whose input cannot be captured still runs; the record holds a marker."""

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    @flowledger.node
    def take(x: Any) -> str:
        return "fine"

    with flowledger.run("wf"):
        assert take(Hostile()) == "fine"
    recorded = events.nodes("take")[0]["data"]
    assert recorded["input"]["__flowledger__"] == "capture_error"
    assert "no repr for you" in recorded["input"]["error"]


def test_system_exit_zero_inside_a_run_is_success(events: CapturedEvents) -> None:
    """sys.exit(0) inside a run ends it as succeeded, not failed."""
    with pytest.raises(SystemExit), flowledger.run("wf"):
        raise SystemExit(0)
    assert events.runs()[0]["data"]["status"] == "succeeded"


@pytest.mark.parametrize("code", [0, None, 3])
def test_sys_exit_in_a_node_inside_a_run_fails_the_run_with_node_exited(
    events: CapturedEvents, code: int | None
) -> None:
    """sys.exit in a node inside ``with flowledger.run()`` fails the run with NodeExited and the node's id."""

    @flowledger.node
    def quits(x: int) -> int:
        raise SystemExit(code)

    with pytest.raises(SystemExit) as raised, flowledger.run("wf"):
        quits(1)
    assert raised.value.code == code
    run = events.runs()[0]["data"]
    assert run["status"] == "failed"
    assert run["error"]["type"] == "flowledger._exceptions.NodeExited"
    assert run["error"]["node_id"] == "quits"
    assert "node `quits` called sys.exit(" in run["error"]["message"]
    assert events.nodes("quits")[0]["data"]["error"]["type"] == "flowledger._exceptions.NodeExited"


def test_a_run_fails_alike_when_its_node_exits_inside_it_or_as_its_own_run(events: CapturedEvents) -> None:
    """A node's sys.exit(0) gives the same run error within ``with flowledger.run()`` as in the node's own run."""

    @flowledger.node
    def step(x: int) -> int:
        raise SystemExit(0)

    with pytest.raises(SystemExit), flowledger.run("step"):
        step(1)
    with pytest.raises(SystemExit):
        step(1)
    explicit, implicit = (r["data"] for r in events.runs())
    assert explicit["status"] == implicit["status"] == "failed"
    assert {k: explicit["error"][k] for k in ("type", "message", "node_id")} == {
        k: implicit["error"][k] for k in ("type", "message", "node_id")
    }


def test_attributes_set_during_an_attempt_reach_its_record(events: CapturedEvents) -> None:
    """NodeAttempt.set_attribute adds to the attributes recorded with node_finished."""
    with flowledger.run("wf"), flowledger.instrument.attempt("call", input=1, attributes={"kind": "http"}) as a:
        a.set_attribute("http.status_code", 201)
    assert events.nodes("call")[0]["data"]["attributes"] == {"kind": "http", "http.status_code": 201}


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_an_exception_that_cannot_be_printed_is_still_recorded(events: CapturedEvents) -> None:
    """An error whose __str__ raises still ends the node and the run, and leaves no span behind."""
    from opentelemetry import trace

    @flowledger.node
    def bad(x: int) -> None:
        raise _Unprintable()

    with pytest.raises(_Unprintable), flowledger.run("wf"):
        bad(1)
    node, run = events.nodes("bad")[0]["data"], events.runs()[0]["data"]
    assert node["status"] == run["status"] == "failed"
    assert "str() raised RuntimeError" in node["error"]["message"]
    assert run["error"]["node_id"] == "bad"
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_huge_error_message_is_cut(events: CapturedEvents) -> None:
    """A multi-megabyte exception message is cut to the capture limit in the records."""

    @flowledger.node
    def loud(x: int) -> None:
        raise ValueError("x" * 5_000_000)

    with pytest.raises(ValueError), flowledger.run("wf"):
        loud(1)
    for record in (events.nodes("loud")[0]["data"], events.runs()[0]["data"]):
        assert len(record["error"]["message"]) < 5000
        assert record["error"]["message"].endswith("more characters]")


def test_the_guard_returns_the_real_output_not_the_redacted_record(
    events: CapturedEvents, configure: Callable[..., Any], tmp_path: Any
) -> None:
    """A duplicate effect returns exactly what the first call returned, secrets and size included."""
    configure(idempotency_guard=True, idempotency_dir=tmp_path)
    real = {"charge_id": 7, "auth_token": "tok-1", "receipt": "r" * 10_000}

    @flowledger.node(effect=True)
    def charge(amount: int) -> dict[str, Any]:
        return dict(real)

    with flowledger.run("billing"):
        charge(5)
    with flowledger.run("billing"):
        assert charge(5) == real
    recorded = events.nodes("charge")[0]["data"]["output"]
    assert recorded["__flowledger__"] == "truncated"
    assert "tok-1" not in json.dumps(events.all)


def test_configure_during_a_run_keeps_recording_that_run(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """Changing settings while a run is open does not lose the rest of the run."""
    with flowledger.run("wf"):
        add(1, 1)
        configure(capture_limit_bytes=2048)
        add(2, 2)
    assert [e["data"]["output"] for e in events.nodes("add")] == [2, 4]
    assert events.runs()[0]["data"]["status"] == "succeeded"


def test_a_capture_closed_after_configure_stops_capturing(configure: Callable[..., Any]) -> None:
    """capture_events() opened before configure() is fully removed when it closes."""
    from flowledger.instrument._pipeline import pipeline
    from flowledger.testing import capture_events

    with capture_events() as captured:
        configure(capture_limit_bytes=2048)
        add(1, 2)
    assert len(captured) == 3
    assert pipeline()._captures == []


def test_a_caller_sampling_decision_is_kept(events: CapturedEvents) -> None:
    """A run continuing an unsampled traceparent hands on the unsampled flag and the trace state."""
    seen: dict[str, Any] = {}

    @flowledger.node
    def look(x: int) -> None:
        seen.update(flowledger.inject({}))

    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    with flowledger.run("wf", traceparent=incoming):
        look(1)
    assert seen["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert seen["traceparent"].endswith("-00")
