"""Sampling keeps the parent of a kept run: a kept child's parent_run_id always names a run the receiver has."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger.instrument import in_context
from flowledger.receiver._config import ReceiverConfig
from flowledger.testing import CapturedEvents
from tests.receiver._support import LiveReceiver, start_receiver

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 90.0


@flowledger.node
def step(x: int) -> int:
    return x + 1


def _failing_child(parent: flowledger.Run, **kwargs: Any) -> str:
    """A child run that fails inside ``parent`` (which goes on and succeeds); its run id."""
    child_id = ""
    try:
        with flowledger.run("child", **kwargs) as child:
            child_id = child.run_id
            step(1)
            raise ValueError("the child failed")
    except ValueError:
        pass
    assert child_id
    assert parent.active
    return child_id


def _kinds_of(events: CapturedEvents, run_id: str) -> list[str]:
    return [e["kind"] for e in events if e["run_id"] == run_id]


def test_a_failed_child_keeps_the_successful_parent_that_was_drawn_out(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """At rate 0 the failing child is kept, and so is its parent, whole and in order; nothing is counted dropped."""
    configure(sample_rate=0.0)
    with flowledger.run("parent") as parent:
        step(0)
        child_id = _failing_child(parent)
        step(2)
    started = {e["run_id"]: e["data"] for e in events.of_kind("run_started")}
    assert started[child_id]["parent_run_id"] == parent.run_id
    assert _kinds_of(events, parent.run_id) == ["run_started", "node_finished", "node_finished", "run_finished"]
    assert [e["seq"] for e in events if e["run_id"] == parent.run_id] == [0, 1, 2, 3]
    assert events.of_kind("run_sampled_out") == []
    statuses = {e["run_id"]: e["data"]["status"] for e in events.of_kind("run_finished")}
    assert statuses == {parent.run_id: "succeeded", child_id: "failed"}


def test_a_child_kept_from_its_start_keeps_its_ancestors(events: CapturedEvents) -> None:
    """A child at rate 1 in a parent and a grandparent drawn out: all three kept, each start before its child's."""
    with (
        flowledger.run("grandparent", sample_rate=0) as grandparent,
        flowledger.run("parent", sample_rate=0) as parent,
        flowledger.run("child", sample_rate=1) as child,
    ):
        step(1)
    order = [e["run_id"] for e in events.of_kind("run_started")]
    assert order == [grandparent.run_id, parent.run_id, child.run_id]
    assert len(events.of_kind("run_finished")) == 3
    assert events.of_kind("run_sampled_out") == []


def test_a_child_dropped_leaves_its_parent_to_its_own_draw(events: CapturedEvents) -> None:
    """Both drawn out and both succeeded: both are dropped and counted, as before."""
    with flowledger.run("parent", sample_rate=0) as parent, flowledger.run("child", sample_rate=0) as child:
        step(1)
    assert {e["run_id"] for e in events.of_kind("run_sampled_out")} == {parent.run_id, child.run_id}
    assert events.of_kind("run_started") == []


def test_a_child_kept_after_its_parent_was_dropped_leaves_the_link_out(events: CapturedEvents) -> None:
    """A child in a thread that fails after its parent ended (and was dropped): kept, without a dangling link."""
    release = threading.Event()
    ids: list[str] = []

    def child_work() -> None:
        release.wait(10)
        _failing_child_after(ids)

    with flowledger.run("parent", sample_rate=0) as parent:
        thread = threading.Thread(target=in_context(child_work))
        thread.start()
    release.set()
    thread.join(10)
    assert [e["run_id"] for e in events.of_kind("run_sampled_out")] == [parent.run_id]
    (started,) = events.of_kind("run_started")
    assert started["run_id"] == ids[0]
    assert "parent_run_id" not in started["data"]


def _failing_child_after(ids: list[str]) -> None:
    try:
        with flowledger.run("child", sample_rate=0) as child:
            ids.append(child.run_id)
            raise ValueError("late")
    except ValueError:
        pass


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db", sweep_interval_s=0))
    yield receiver
    receiver.stop()


def test_the_kept_childs_parent_is_found_on_the_receiver(
    live: LiveReceiver, configure: Callable[..., Any], tmp_path: Path
) -> None:
    """FLOWLEDGER_SAMPLE_RATE=0: the failed child is stored, and its parent too (not "there is no run")."""
    configure(endpoint=live.url, spool_dir=tmp_path / "spool", export_spans=False, sample_rate=0.0)
    with flowledger.run("parent") as parent:
        child_id = _failing_child(parent)
    assert flowledger.flush(10.0)
    assert flowledger.stats()["rejected"] == 0
    child = live.get(f"/api/runs/{child_id}").json()
    assert child["status"] == "failed"
    assert child["parent_run_id"] == parent.run_id
    found = live.get(f"/api/runs/{parent.run_id}")
    assert found.status_code == 200, found.text
    assert found.json()["status"] == "succeeded"


FORKED_CHILD_RUN = """
import faulthandler, json, os, sys, flowledger
from flowledger.instrument._sampling import HELD_EVENTS_MAX
faulthandler.dump_traceback_later(60, exit=True)
parent_rate, child = float(sys.argv[1]), sys.argv[2]
@flowledger.node
def step(x): return x
with flowledger.run("forked-parent", sample_rate=parent_rate) as parent:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        child_id = ""
        if child == "fills":  # more nodes in the inherited run than a run drawn out holds
            for i in range(HELD_EVENTS_MAX + 1):
                step(i)
        else:
            try:
                with flowledger.run("forked-child", sample_rate=0.0 if child == "fails" else 1.0) as run:
                    child_id = run.run_id
                    if child == "fails":
                        raise ValueError("the child failed")
            except ValueError:
                pass
        os.write(write, json.dumps({"child": child_id, "child_flushed": flowledger.flush(20)}).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    forked = json.loads(os.read(read, 4096))
print(json.dumps({"parent": parent.run_id, "flushed": flowledger.flush(20), **forked}), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("child", ["succeeds", "fails"])
def test_a_forked_childs_kept_run_never_keeps_its_inherited_parent(
    live: LiveReceiver, tmp_path: Path, child: str
) -> None:
    """The parent process drops its run drawn out; a forked child's kept run (from its start, or failed) goes
    without the link and sends nothing of the parent's: no parent left ``running`` for ever on the receiver."""
    ids = _fork_script(live, tmp_path, "0", child)
    parent = live.get(f"/api/runs/{ids['parent']}")
    assert parent.status_code == 404, parent.text[:400]  # not stored at all, rather than stored and never finished
    stored = live.get(f"/api/runs/{ids['child']}").json()
    assert stored["status"] == ("failed" if child == "fails" else "succeeded")
    assert stored["parent_run_id"] is None
    assert [run["workflow_id"] for run in live.get("/api/runs").json()["runs"]] == ["forked-child"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_filling_its_inherited_run_does_not_keep_it(live: LiveReceiver, tmp_path: Path) -> None:
    """Nodes a forked child records in the parent's run drawn out never overflow it into being kept from the
    child: the parent process drops it, and nothing of it reaches the receiver."""
    ids = _fork_script(live, tmp_path, "0", "fills")
    parent = live.get(f"/api/runs/{ids['parent']}")
    assert parent.status_code == 404, parent.text[:400]
    assert live.get("/api/runs").json()["runs"] == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_childs_run_keeps_the_link_to_a_parent_recorded(live: LiveReceiver, tmp_path: Path) -> None:
    """A parent not drawn out is recorded by its own process: the forked child's run names it, as before."""
    ids = _fork_script(live, tmp_path, "1", "succeeds")
    child = live.get(f"/api/runs/{ids['child']}").json()
    assert child["parent_run_id"] == ids["parent"]
    assert live.get(f"/api/runs/{ids['parent']}").json()["status"] == "succeeded"


def _fork_script(live: LiveReceiver, tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run ``FORKED_CHILD_RUN`` in a new process sending to ``live``: the run ids, once both processes flushed."""
    script = tmp_path / "forked_child_run.py"
    script.write_text(textwrap.dedent(FORKED_CHILD_RUN))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        FLOWLEDGER_ENDPOINT=live.url,
        FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
        FLOWLEDGER_EXPORT_SPANS="0",
    )
    try:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the script hung past {CHILD_TIMEOUT_S} s; stderr: {exc.stderr!r}")
    assert done.returncode == 0, done.stderr
    ids: dict[str, Any] = json.loads(done.stdout)
    assert ids.pop("flushed") is ids.pop("child_flushed") is True, ids
    return ids
