"""The SDK and the receiver together, across crashes: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, free_socket, start_receiver

ROOT = Path(__file__).resolve().parents[1]
RUNS_BEFORE_CRASH = 20
NODES_PER_RUN = 3

PRODUCER = textwrap.dedent(
    """
    import sys, time
    import flowledger

    @flowledger.node
    def step(i):
        return {"i": i}

    for r in range(int(sys.argv[1])):
        with flowledger.run("crashy", data={"run": r}):
            for i in range(int(sys.argv[2])):
                step(i)
    flowledger.flush(timeout_s=float(sys.argv[3]))
    stats = flowledger.stats()
    print(f"emitted={stats['emitted']} spooled={stats.get('spooled', 0)} sent={stats.get('sent', 0)}", flush=True)
    if sys.argv[4] == "hang":
        time.sleep(600)   # waits here to be killed
    """
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver with a real SQLite ledger on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"))
    yield receiver
    receiver.stop()


def _env(endpoint: str, spool: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    return env | {
        "FLOWLEDGER_ENDPOINT": endpoint,
        "FLOWLEDGER_SPOOL_DIR": str(spool),
        "FLOWLEDGER_EXPORT_SPANS": "0",
        "FLOWLEDGER_MAX_RETRIES": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    }


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


@pytest.mark.slow
def test_events_spooled_by_a_killed_process_are_delivered_exactly_once(tmp_path: Path) -> None:
    """A process killed with SIGKILL after spooling (receiver down) loses nothing: its successor delivers all, once,
    to the receiver back where it was (batches replay only to the destination they were bound for)."""
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    spool = tmp_path / "spool"
    with free_socket() as closed:  # bound but never listening: connections are refused
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
        crashed = subprocess.Popen(
            [sys.executable, str(script), str(RUNS_BEFORE_CRASH), str(NODES_PER_RUN), "3", "hang"],
            env=_env(down, spool),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert crashed.stdout is not None
        line = crashed.stdout.readline()
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(timeout=10)
        crashed.stdout.close()
        port = closed.getsockname()[1]
    emitted = int(re.search(r"emitted=(\d+)", line).group(1))  # type: ignore[union-attr]
    assert emitted == RUNS_BEFORE_CRASH * (2 + NODES_PER_RUN)
    assert int(re.search(r"spooled=(\d+)", line).group(1)) == emitted  # type: ignore[union-attr]
    assert list(spool.glob("*")), "the killed process left its events in the spool"
    live = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"), port=port)
    try:
        _deliver_and_count(live, script, spool, emitted)
    finally:
        live.stop()


def _deliver_and_count(live: LiveReceiver, script: Path, spool: Path, emitted: int) -> None:
    for _ in range(2):  # two successors: the second must find nothing left to replay
        done = subprocess.run(
            [sys.executable, str(script), "1", str(NODES_PER_RUN), "10", "exit"],
            env=_env(live.url, spool),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    runs = live.get("/api/runs", params={"limit": 100}).json()
    assert runs["total"] == RUNS_BEFORE_CRASH + 2
    assert {r["status"] for r in runs["runs"]} == {"succeeded"}
    for run in runs["runs"][:3]:
        detail = live.get(f"/api/runs/{run['run_id']}").json()
        assert [n["node_id"] for n in detail["nodes"]] == ["step"] * NODES_PER_RUN
    metrics = live.get("/metrics").text
    per_run = 2 + NODES_PER_RUN
    assert _metric(metrics, "flowledger_events_accepted_total") == emitted + 2 * per_run
    assert _metric(metrics, "flowledger_events_duplicate_total") == 0
    assert _metric(metrics, "flowledger_events_lost") == 0
    assert live.get("/api/verify").json()["ok"] is True


def test_a_forked_child_is_a_new_producer(tmp_path: Path) -> None:
    """After fork the child stamps its events with a producer id of its own, sequence from zero."""
    code = textwrap.dedent(
        """
        import os, json
        import flowledger
        from flowledger.testing import capture_events
        with capture_events() as events:
            flowledger.node(lambda x: x)(1)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                with capture_events() as child:
                    flowledger.node(lambda x: x)(2)
                os.write(w, json.dumps([(e["producer_id"], e["producer_seq"]) for e in child]).encode())
                os._exit(0)
            os.waitpid(pid, 0)
            child = json.loads(os.read(r, 65536))
        print(json.dumps({"parent": [(e["producer_id"], e["producer_seq"]) for e in events], "child": child}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env("http://127.0.0.1:9", tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    parent_ids = {p for p, _ in out["parent"]}
    child_ids = {p for p, _ in out["child"]}
    assert len(parent_ids) == len(child_ids) == 1
    assert parent_ids != child_ids
    assert [s for _, s in out["child"]] == [0, 1, 2]


MP_CHILDREN = textwrap.dedent(
    """
    import multiprocessing, sys
    import flowledger

    @flowledger.node
    def square(x):
        return x * x

    def work(i):
        flowledger.configure(endpoint=sys.argv[1])
        with flowledger.run("mp-child", data=i):
            square(i)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("fork")
        children = [ctx.Process(target=work, args=(i,)) for i in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        print("joined")
    """
)


def test_multiprocessing_children_deliver_without_an_explicit_flush(live: LiveReceiver, tmp_path: Path) -> None:
    """Runs recorded in forked multiprocessing children (which end with os._exit) are sent or spooled, never lost."""
    script = tmp_path / "children.py"
    script.write_text(MP_CHILDREN)
    done = subprocess.run(
        [sys.executable, str(script), live.url],
        env=_env("http://127.0.0.1:9", tmp_path / "spool"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # each child sent its events within the exit budget or spooled them; a later process replays the spool
    replay = "import flowledger, sys; sys.exit(0 if flowledger.flush(timeout_s=10) else 1)"
    successor = subprocess.run(
        [sys.executable, "-c", replay],
        env=_env(live.url, tmp_path / "spool"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert successor.returncode == 0, successor.stderr
    runs = live.get("/api/runs", params={"workflow_id": "mp-child"}).json()
    assert runs["total"] == 3
    assert {r["status"] for r in runs["runs"]} == {"succeeded"}


def test_counters_outlive_shutdown_and_count_what_came_after(tmp_path: Path) -> None:
    """After shutdown() the sender's counters stay readable, and events emitted later are counted as dropped."""
    code = textwrap.dedent(
        """
        import json
        import flowledger
        flowledger.node(lambda x: x)(1)
        flowledger.shutdown(0.5)
        after_shutdown = flowledger.stats()
        flowledger.node(lambda x: x)(2)
        print(json.dumps({"at": after_shutdown, "later": flowledger.stats()}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env("http://127.0.0.1:9", tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["at"]["enqueued"] == 3
    assert out["at"]["spooled"] == 3
    assert out["later"]["enqueued"] == 3
    assert out["later"]["dropped_closed"] == 3
