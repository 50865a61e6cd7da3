"""run() and node() check their arguments against the wire format at the call, so no run is lost to a rejection."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger._run_context import RUN_ID_PATTERN
from flowledger._wire import event_schema
from flowledger.instrument import _run
from flowledger.receiver._config import ReceiverConfig
from flowledger.testing import CapturedEvents
from tests.receiver._support import LiveReceiver, start_receiver


def test_the_limits_are_the_wire_formats() -> None:
    """The SDK's bounds of run and node arguments are those of events.v1.schema.json."""
    defs = event_schema()["$defs"]
    started, finished = defs["run_started"]["properties"], defs["node_finished"]["properties"]
    assert started["workflow_id"]["maxLength"] == finished["node_id"]["maxLength"] == _run.MAX_ID_CHARS
    assert started["workflow_id"]["minLength"] == finished["node_id"]["minLength"] == 1
    assert started["workflow_name"]["anyOf"][0]["maxLength"] == _run.MAX_NAME_CHARS
    assert started["workflow_version"]["anyOf"][0]["maxLength"] == _run.MAX_VERSION_CHARS
    limits = started["limits"]["properties"]
    assert limits["deadline_s"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0, "maximum": _run.MAX_LIMIT}
    assert limits["budget_usd"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": _run.MAX_LIMIT}
    assert defs["uuid"]["pattern"] == f"^{RUN_ID_PATTERN.pattern}$"
    assert started["definition_sha256"]["anyOf"][0]["pattern"] == f"^{_run._SHA256.pattern}$"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run_id": "order-123"}, "run_id must be a UUID"),
        ({"name": 123}, "name must be a string, not int"),
        ({"workflow_id": ""}, "workflow_id must not be empty"),
        ({"workflow_id": "x" * 257}, "workflow_id is 257 characters long; the wire format takes at most 256"),
        ({"workflow_id": 7}, "workflow_id must be a string, not int"),
        ({"name": "n" * 1025}, "name is 1025 characters long"),
        ({"version": "v" * 257}, "version is 257 characters long"),
        ({"budget_usd": "0.5"}, "budget_usd must be a number \\(an int, a float or a Decimal\\), not str"),
        ({"deadline_s": "10"}, "deadline_s must be a number"),
        ({"deadline_s": -1}, "deadline_s must be more than 0 and at most 2\\*\\*53, not -1"),
        ({"deadline_s": 0}, "deadline_s must be more than 0"),
        ({"budget_usd": -1}, "budget_usd must be 0 or more and at most 2\\*\\*53, not -1"),
        ({"budget_usd": float("nan")}, "budget_usd must be 0 or more"),
        ({"budget_usd": Decimal("NaN")}, "budget_usd must be 0 or more"),
        ({"deadline_s": 10**400}, "deadline_s must be more than 0 and at most 2\\*\\*53, not an integer of 1329 bits"),
        ({"deadline_s": True}, "deadline_s must be a number"),
        (
            {"deadline_s": Decimal("1e-400")},
            "deadline_s must be more than 0 and at most 2\\*\\*53, not Decimal\\('1E-400'\\), which is sent as "
            "the float 0.0",
        ),
        ({"budget_usd": Decimal("-1e-400")}, "budget_usd must be 0 or more and at most 2\\*\\*53, not Decimal"),
        ({"budget_usd": Decimal("1e400")}, "budget_usd must be 0 or more and at most 2\\*\\*53, not Decimal"),
        ({"deadline_s": Decimal("sNaN")}, "deadline_s must be more than 0"),
        ({"deadline_s": 2**53 + 1}, "deadline_s must be more than 0 and at most 2\\*\\*53, not 9007199254740993"),
        ({"definition_sha256": "abc"}, "definition_sha256 must be a sha256 of 64 hex digits"),
        ({"resumed_from": "run-1"}, "resumed_from must be a UUID"),
        ({"trigger": "cron"}, "trigger must be one of manual, http, schedule, not 'cron'"),
        ({"capture": "everything"}, "capture must be one of preview, full"),
        ({"attributes": ["a"]}, "attributes must be a mapping"),
        ({"traceparent": 5}, "traceparent must be a W3C traceparent string"),
    ],
)
def test_an_argument_the_wire_format_does_not_take_is_refused_at_the_call(
    kwargs: dict[str, Any], message: str, events: CapturedEvents
) -> None:
    """Each is a ConfigError naming the argument, raised by run() before anything is recorded."""
    arguments = {"workflow_id": "wf", **kwargs}
    with pytest.raises(flowledger.ConfigError, match=f"^flowledger.run\\(\\): {message}"):
        flowledger.run(**arguments)
    assert len(events) == 0


def test_values_clearly_meant_are_converted(events: CapturedEvents) -> None:
    """A Decimal budget, an int deadline, a UUID object, an uppercase UUID or sha256 and a numeric version are taken."""
    run_id = uuid.uuid4()
    sha = "AB" * 32
    with flowledger.run(
        "wf", budget_usd=Decimal("5.00"), deadline_s=10, run_id=run_id, definition_sha256=sha, version=3
    ) as run:
        pass
    assert run.run_id == str(run_id)
    started = events.of_kind("run_started")[0]["data"]
    assert started["limits"] == {"deadline_s": 10.0, "budget_usd": 5.0}
    assert type(started["limits"]["budget_usd"]) is float
    assert started["definition_sha256"] == sha.lower()
    assert started["workflow_version"] == "3"
    with flowledger.run("wf", run_id=str(run_id).upper()) as upper:
        pass
    assert upper.run_id == str(run_id)


def test_a_decimal_budget_aborts_the_run_once_passed(events: CapturedEvents) -> None:
    """The budget given as a Decimal is the one the run keeps to."""

    @flowledger.node
    def spend(usd: Decimal) -> None:
        flowledger.cost(usd=usd)

    with pytest.raises(flowledger.RunAborted), flowledger.run("wf", budget_usd=Decimal("0.50")):
        spend(Decimal("0.30"))
        spend(Decimal("0.30"))
        spend(Decimal("0.30"))
    assert events.runs()[0]["data"]["status"] == "aborted"


def test_a_continued_run_needs_a_run_id() -> None:
    """Run.continued() refuses an id that is not a run's, as run(run_id=) does."""
    with pytest.raises(flowledger.ConfigError, match="run_id must be a UUID"):
        _run.Run.continued("order-123", workflow_id="wf")


# --- node() ----------------------------------------------------------------------------------------------------


def _price(order: str) -> str:
    return order


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: flowledger.node("price"),  # type: ignore[call-overload]
            "takes the node's id by name: write @flowledger.node\\(id='price'\\)",
        ),
        (lambda: flowledger.node(5), "decorates a function, not int"),  # type: ignore[call-overload]
        (lambda: flowledger.node(id=5)(_price), "id must be a string, not int"),  # type: ignore[call-overload]
        (lambda: flowledger.node(id="")(_price), "id '' is 0 characters long; a node id is 1 to 256"),
        (lambda: flowledger.node(id="n" * 257)(_price), "is 257 characters long; a node id is 1 to 256"),
        (lambda: flowledger.node(capture="bogus"), "capture must be one of preview, full"),
        (lambda: flowledger.node(id="price")("not a function"), "decorates a function, not str"),  # type: ignore[arg-type]
    ],
)
def test_a_node_argument_that_cannot_be_used_is_a_usage_error(call: Callable[[], Any], message: str) -> None:
    """node() says what to change when decorating, never an AttributeError or a ValueError."""
    with pytest.raises(flowledger.UsageError, match=message):
        call()


class _Quote:
    """A callable object."""

    def __call__(self, order: str) -> str:
        return f"quote {order}"


class _AsyncQuote:
    async def __call__(self, order: str) -> str:
        return f"async quote {order}"


def test_a_partial_and_a_callable_object_take_a_sensible_id(events: CapturedEvents) -> None:
    """A partial is named after its function, a callable object after its class; both record as any node."""

    def total(rate: float, amount: float) -> float:
        return rate * amount

    with flowledger.run("wf"):
        assert flowledger.node(functools.partial(total, 2.0))(3.0) == 6.0
        assert flowledger.node(_Quote())("A1") == "quote A1"
    assert [e["data"]["node_id"] for e in events.of_kind("node_finished")] == ["total", "_Quote"]
    assert events.nodes("total")[0]["data"]["input"] == 3.0


def test_a_callable_object_with_an_async_call_is_an_async_node(events: CapturedEvents) -> None:
    """The object's ``__call__`` says whether the node is a coroutine: its attempt ends when the await does."""
    import asyncio

    async def main() -> str:
        with flowledger.run("wf"):
            result: str = await flowledger.node(_AsyncQuote())("A1")
            return result

    assert asyncio.run(main()) == "async quote A1"
    assert events.nodes("_AsyncQuote")[0]["data"]["output"] == "async quote A1"


# --- end to end -------------------------------------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db", sweep_interval_s=0))
    yield receiver
    receiver.stop()


def test_a_run_with_a_decimal_budget_and_a_given_run_id_is_stored_finished(
    live: LiveReceiver, configure: Callable[..., Any], tmp_path: Path
) -> None:
    """The receiver takes every event of a run given a Decimal budget and a UUID object as its id: it ends stored."""
    configure(endpoint=live.url, spool_dir=tmp_path / "spool", export_spans=False)

    @flowledger.node
    def step(x: int) -> int:
        return x + 1

    run_id = uuid.uuid4()
    with flowledger.run("argument-checks", budget_usd=Decimal("5.00"), deadline_s=60, run_id=run_id, version=2):
        step(1)
    assert flowledger.flush(10.0)
    assert flowledger.stats()["rejected"] == 0
    detail = live.get(f"/api/runs/{run_id}").json()
    assert detail["status"] == "succeeded"
    assert [n["node_id"] for n in detail["nodes"]] == ["step"]


def test_the_smallest_limits_taken_are_stored_by_the_receiver(
    live: LiveReceiver, configure: Callable[..., Any], tmp_path: Path
) -> None:
    """A Decimal limit is checked as the float it is sent as: one that is not 0 as a float is one the receiver takes
    (a Decimal too small for a float, sent as 0.0, is refused at the call instead; see above)."""
    configure(endpoint=live.url, spool_dir=tmp_path / "spool", export_spans=False)
    with flowledger.run("smallest-limits", deadline_s=Decimal("1e-320"), budget_usd=Decimal("1e-400")) as run:
        pass
    assert flowledger.flush(10.0)
    assert flowledger.stats()["rejected"] == 0
    assert live.get(f"/api/runs/{run.run_id}").json()["status"] == "succeeded"
