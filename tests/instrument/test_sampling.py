"""Sampling: whole runs kept or dropped at their end; failed, aborted, slow and oversized runs always kept."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import flowledger
from flowledger._exceptions import ConfigError
from flowledger.instrument._config import _forget_reports, settings_from_env
from flowledger.instrument._sampling import HELD_EVENTS_MAX, parse_sample_rates
from flowledger.testing import CapturedEvents


@flowledger.node
def step(x: int) -> int:
    return x + 1


@flowledger.node
def explode(x: int) -> int:
    raise ValueError(f"no {x}")


def _one_run(workflow_id: str, *, fail: bool = False, **kwargs: Any) -> None:
    try:
        with flowledger.run(workflow_id, **kwargs):
            explode(step(1)) if fail else step(1)
    except ValueError:
        pass


def _kinds_of(events: CapturedEvents, run_id: str) -> list[str]:
    return [e["kind"] for e in events if e["run_id"] == run_id]


def test_rate_zero_drops_successes_whole_and_keeps_every_failure(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """At rate 0 a fast success leaves one run_sampled_out event only; a failure keeps all its events, in order."""
    configure(sample_rate=0.0)
    for _ in range(5):
        _one_run("orders")
    _one_run("orders", fail=True)
    dropped = events.of_kind("run_sampled_out")
    assert len(dropped) == 5
    assert all(
        e["data"] == {"workflow_id": "orders", "runs": 1, "duration_ms": e["data"]["duration_ms"]} for e in dropped
    )
    for event in dropped:
        assert _kinds_of(events, event["run_id"]) == ["run_sampled_out"]
    (kept,) = events.of_kind("run_finished")
    assert kept["data"]["status"] == "failed"
    kinds = _kinds_of(events, kept["run_id"])
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_finished"
    assert kinds.count("node_finished") == 2
    seqs = [e["seq"] for e in events if e["run_id"] == kept["run_id"]]
    assert seqs == sorted(seqs)


def test_aborted_and_slow_runs_are_kept(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """An aborted run and one slower than sample_slow_s are kept at rate 0."""
    configure(sample_rate=0.0, sample_slow_s=0.05)
    with flowledger.run("orders") as run:
        run.abort("deadline", "too slow")
    with flowledger.run("orders"):
        time.sleep(0.06)
    statuses = [e["data"]["status"] for e in events.of_kind("run_finished")]
    assert statuses == ["aborted", "succeeded"]
    assert events.of_kind("run_sampled_out") == []


def test_rates_per_run_and_per_workflow(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """run(sample_rate=) beats the workflow's rate, which beats the default."""
    configure(sample_rate="orders=0,1")
    _one_run("orders")
    _one_run("billing")
    _one_run("orders", sample_rate=1.0)
    assert [e["data"]["workflow_id"] for e in events.of_kind("run_sampled_out")] == ["orders"]
    assert [e["data"]["workflow_id"] for e in events.of_kind("run_finished")] == ["billing", "orders"]


def test_a_run_too_big_to_hold_is_kept_whole(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """Past HELD_EVENTS_MAX held events the run is kept: every event goes out, none is lost."""
    configure(sample_rate=0.0)
    with flowledger.run("orders") as run:
        for i in range(HELD_EVENTS_MAX + 10):
            step(i)
    assert events.of_kind("run_sampled_out") == []
    assert _kinds_of(events, run.run_id).count("node_finished") == HELD_EVENTS_MAX + 10


def test_bad_rates_are_named() -> None:
    """A rate outside 0..1 is refused in code; a bad variable is reported once and the default kept."""
    with pytest.raises(ConfigError, match="sample_rate must be a number from 0 to 1"):
        flowledger.run("orders", sample_rate=1.5)
    with pytest.raises(ConfigError, match="is not a rate from 0 to 1"):
        flowledger.configure(sample_rate="orders=fast")
    with pytest.raises(ConfigError, match="sample_slow_s must be a number of seconds more than 0"):
        flowledger.configure(sample_slow_s=0)
    _forget_reports()
    assert settings_from_env({"FLOWLEDGER_SAMPLE_RATE": "2"}).sample_rate == 1.0
    settings = settings_from_env({"FLOWLEDGER_SAMPLE_RATE": "orders=0.25, 0.5"})
    assert (settings.sample_rate, settings.sample_rate_by_workflow) == (0.5, (("orders", 0.25),))
    assert parse_sample_rates("0") == (0.0, {})
    with pytest.raises(ValueError, match="names no workflow"):
        parse_sample_rates("=0.5")
