"""The run context in the SDK: arguments, configured and environment defaults, parents, and bad values."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

import flowledger
from flowledger._exceptions import ConfigError
from flowledger._run_context import CONTEXT_MAX_CHARS, PROJECT_PATTERN, RUN_ID_PATTERN
from flowledger._wire import event_schema, new_event_id
from flowledger.instrument import continue_run, run_context
from flowledger.instrument._config import _forget_reports, settings_from_env
from flowledger.testing import CapturedEvents


def _started(events: CapturedEvents) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "run_started"]


def test_the_bounds_are_the_wire_schemas() -> None:
    """The SDK's checks use the bounds the wire schema declares."""
    schema = event_schema()
    data = schema["$defs"]["run_started"]["properties"]
    for name in ("user_id", "agent_id", "intent"):
        assert data[name]["anyOf"][0]["maxLength"] == CONTEXT_MAX_CHARS
    assert data["parent_run_id"]["anyOf"][0] == {"$ref": "#/$defs/uuid"}
    assert schema["$defs"]["uuid"]["pattern"] == f"^{RUN_ID_PATTERN.pattern}$"
    assert schema["properties"]["project"]["anyOf"][0]["pattern"] == f"^{PROJECT_PATTERN.pattern}$"


def test_run_arguments_reach_run_started_and_the_envelope(events: CapturedEvents) -> None:
    """project goes on every event of the run; user, agent and intent in run_started's data."""
    with flowledger.run("trip", project="travel", user_id="u-7", agent_id="planner", intent="plan a trip"):
        pass
    (started,) = _started(events)
    assert started["data"]["user_id"] == "u-7"
    assert started["data"]["agent_id"] == "planner"
    assert started["data"]["intent"] == "plan a trip"
    assert "parent_run_id" not in started["data"]
    assert {e["project"] for e in events} == {"travel"}


def test_configured_defaults_fill_what_the_run_does_not_say(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """configure(project=, user_id=, agent_id=) are the defaults; a run's own argument wins."""
    configure(project="shop", user_id="u-1", agent_id="svc")
    with flowledger.run("order"):
        pass
    with flowledger.run("order", user_id="u-2"):
        pass
    first, second = _started(events)
    assert (first["project"], first["data"]["user_id"], first["data"]["agent_id"]) == ("shop", "u-1", "svc")
    assert second["data"]["user_id"] == "u-2"


def test_an_empty_project_is_no_project_whatever_the_defaults(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """run(project="") records the run without a project, neither the configured one nor its parent run's (a
    resume of a run without one records so), and its nodes' events too."""
    configure(project="shop")

    @flowledger.node
    def price() -> int:
        return 3

    with flowledger.run("outer", project="travel"), flowledger.run("order", project="") as inner:
        price()
        inner_id = inner.run_id
    mine = [e for e in events if e["run_id"] == inner_id]
    assert {e["kind"] for e in mine} >= {"run_started", "node_finished", "run_finished"}
    assert all("project" not in e for e in mine), mine
    assert {e["project"] for e in events if e["run_id"] != inner_id} == {"travel"}


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("project", "has space", "not a project name"),
        ("user_id", "", "must not be empty"),
        ("agent_id", "x" * (CONTEXT_MAX_CHARS + 1), "over the limit of 256"),
    ],
)
def test_configure_refuses_a_bad_value(configure: Callable[..., Any], setting: str, value: str, problem: str) -> None:
    """configure() with a value the wire format does not take raises ConfigError saying what is wrong."""
    with pytest.raises(ConfigError, match=problem):
        configure(**{setting: value})


def test_environment_defaults_are_checked(caplog: pytest.LogCaptureFixture) -> None:
    """FLOWLEDGER_USER_ID and FLOWLEDGER_AGENT_ID are read; a bad FLOWLEDGER_PROJECT is reported and ignored."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env(
            {"FLOWLEDGER_PROJECT": "no spaces allowed", "FLOWLEDGER_USER_ID": "u-9", "FLOWLEDGER_AGENT_ID": "a-1"}
        )
    assert (settings.project, settings.user_id, settings.agent_id) == (None, "u-9", "a-1")
    assert "FLOWLEDGER_PROJECT" in caplog.text


def test_a_nested_run_records_its_parent_and_shares_project_and_user(events: CapturedEvents) -> None:
    """A run started inside another names it as parent and takes its project and user, not its agent or intent."""
    outer = flowledger.run("outer", project="travel", user_id="u-7", agent_id="planner", intent="plan")
    with outer, flowledger.run("inner", agent_id="booker"):
        pass
    inner, outer_started = sorted(_started(events), key=lambda e: e["data"]["workflow_id"])
    assert inner["data"]["parent_run_id"] == outer.run_id
    assert inner["project"] == "travel"
    assert inner["data"]["user_id"] == "u-7"
    assert inner["data"]["agent_id"] == "booker"
    assert "intent" not in inner["data"]
    assert "parent_run_id" not in outer_started["data"]


def test_an_explicit_parent_wins_and_a_bad_one_is_left_out(
    events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    """parent_run_id= names the parent; a value that is not a run id is reported and the run still recorded."""
    parent = new_event_id()
    with flowledger.run("child", parent_run_id=parent):
        pass
    with caplog.at_level(logging.WARNING, logger="flowledger"), flowledger.run("orphan", parent_run_id="nope"):
        pass
    first, second = _started(events)
    assert first["data"]["parent_run_id"] == parent
    assert "parent_run_id" not in second["data"]
    assert len([e for e in events if e["kind"] == "run_finished"]) == 2


def test_a_run_inside_a_continued_run_names_the_remote_run(events: CapturedEvents) -> None:
    """A run started in a worker's continued part of a run (another process) records that run as parent."""
    with flowledger.run("caller", project="travel", user_id="u-7") as caller:
        context = run_context()
    assert context is not None
    with continue_run(context) as part:
        assert part is not None
        with flowledger.run("delegate"):
            pass
    delegate = next(e for e in _started(events) if e["data"]["workflow_id"] == "delegate")
    assert delegate["data"]["parent_run_id"] == caller.run_id
    assert (delegate["project"], delegate["data"]["user_id"]) == ("travel", "u-7")


def test_a_continued_part_of_a_run_without_a_project_sends_none(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """A worker set to a project continues a run without one: the part's events carry no project either, so the
    run stays one run (a run is its project and its id) instead of a second one in the worker's project."""

    @flowledger.node
    def price() -> int:
        return 3

    with flowledger.run("order", project="") as caller:
        context = run_context()
    assert context is not None
    configure(project="shop")
    with continue_run(context) as part:
        assert part is not None
        price()
    mine = [e for e in events if e["run_id"] == caller.run_id]
    assert any(e["kind"] == "node_finished" for e in mine)
    assert all("project" not in e for e in mine), mine
