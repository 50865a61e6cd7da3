"""A run dropped by sampling stays dropped: nodes that end after it, in other threads, send nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import flowledger
from flowledger import ContextThreadPoolExecutor
from flowledger.instrument import attempt
from flowledger.testing import CapturedEvents

WAIT_S = 10.0
"""How long a test waits for a thread it controls (it never takes this long unless something hangs)."""


class Gate:
    """A node's thread: tells when the node has started and waits to be let go."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        self.started.set()
        assert self.release.wait(WAIT_S), "the test never let the node go"


def _late_node(gate: Gate, *, fail: bool) -> Callable[[int], int]:
    @flowledger.node(id="late")
    def late(x: int) -> int:
        gate.hold()
        if fail:
            raise ValueError(f"late failure {x}")
        return x

    return late


def _dropped_run_with_a_late_node(*, fail: bool) -> tuple[str, BaseException | None]:
    """A run at rate 0 whose node, started in a pool thread, ends only after the run was dropped."""
    gate = Gate()
    late = _late_node(gate, fail=fail)
    with ContextThreadPoolExecutor(max_workers=1) as pool:
        with flowledger.run("late-nodes", sample_rate=0) as run:
            future = pool.submit(late, 5)
            assert gate.started.wait(WAIT_S)
        gate.release.set()
        error = future.exception(WAIT_S)
    return run.run_id, error


@pytest.mark.parametrize("fail", [False, True], ids=["succeeds", "fails"])
def test_a_node_ending_after_its_sampled_out_run_sends_nothing(
    events: CapturedEvents, configure: Callable[..., Any], fail: bool
) -> None:
    """A node that ends (or fails) after its run was sampled out adds no event: the run stays one run_sampled_out."""
    configure(node_start_delay_s=0)  # node_started at once, while the run still holds its events
    run_id, error = _dropped_run_with_a_late_node(fail=fail)
    assert isinstance(error, ValueError) if fail else error is None
    assert [e["kind"] for e in events if e["run_id"] == run_id] == ["run_sampled_out"]


def test_a_node_starting_after_its_sampled_out_run_sends_nothing(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """A node attempt begun in a run that was already sampled out sends neither node_started nor node_finished."""
    configure(node_start_delay_s=0)
    with flowledger.run("late-nodes", sample_rate=0) as run:
        pass
    with attempt("after", run=run):
        pass
    assert [e["kind"] for e in events if e["run_id"] == run.run_id] == ["run_sampled_out"]
