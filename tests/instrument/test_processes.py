"""Processes: forked children, multiprocessing pools (fork, spawn, forkserver), signal handlers that record.

Every test runs a real script in a child process against a real receiver (a
SQLite ledger on 127.0.0.1) and reads back what the receiver stored. A hang
fails the test by the child's timeout (the scripts also dump their stacks
with faulthandler before it). ``SDK_SRC_UNDER_TEST`` names another source
tree for the children (to check an older SDK by hand); by default, this one's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, start_receiver

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 90.0

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"))
    yield receiver
    receiver.stop()


def _run_script(tmp_path: Path, live: LiveReceiver, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / f"script_{uuid.uuid4().hex[:8]}.py"
    script.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    src = os.environ.get("SDK_SRC_UNDER_TEST", str(REPO_ROOT / "src"))
    env["PYTHONPATH"] = os.pathsep.join([src, str(REPO_ROOT)])
    env.update(
        FLOWLEDGER_ENDPOINT=live.url,
        FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
        FLOWLEDGER_EXPORT_SPANS="0",
    )
    try:
        return subprocess.run(
            [sys.executable, str(script), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the script hung past {CHILD_TIMEOUT_S} s; stderr: {exc.stderr!r}")


def _runs(live: LiveReceiver, workflow_id: str) -> list[dict[str, Any]]:
    answer = live.get("/api/runs", params={"workflow_id": workflow_id, "limit": 500})
    assert answer.status_code == 200, answer.text
    runs: list[dict[str, Any]] = answer.json()["runs"]
    return runs


def _nodes(live: LiveReceiver, run_id: str) -> list[dict[str, Any]]:
    answer = live.get(f"/api/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    nodes: list[dict[str, Any]] = body.get("nodes") or body.get("attempts") or []
    return nodes


def _wait_for(live: LiveReceiver, workflow_id: str, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The runs of ``workflow_id`` once ``count`` are stored (or what is stored after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    runs = _runs(live, workflow_id)
    while len(runs) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        runs = _runs(live, workflow_id)
    return runs


# --- multiprocessing children ----------------------------------------------------------

FORKSERVER_CHILDREN = """
import sys, multiprocessing as mp, concurrent.futures as cf, flowledger
wf = sys.argv[1]
@flowledger.node(id=wf + "-square")
def square(x): return x * x
if __name__ == "__main__":
    ctx = mp.get_context("forkserver")
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:  # shut down cleanly: no terminate
        assert sum(ex.map(square, range(20))) == 2470
    p = ctx.Process(target=square, args=(7,)); p.start(); p.join()
    print(p.exitcode)
"""


def test_forkserver_children_deliver_every_record(tmp_path: Path, live: LiveReceiver) -> None:
    """A forkserver child (the default start method from Python 3.14) imports flowledger after its fork and ends
    with os._exit: its records still reach the receiver (ProcessPoolExecutor workers and a Process)."""
    done = _run_script(tmp_path, live, FORKSERVER_CHILDREN, "fsrv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
    runs = _wait_for(live, "fsrv-square", 21)
    assert len(runs) == 21
    assert {run["status"] for run in runs} == {"succeeded"}


POOL_WITH_BLOCK = """
import os, signal, sys, multiprocessing as mp, flowledger
wf, method = sys.argv[1], sys.argv[2]
@flowledger.node(id=wf)
def work(x): return x * 2
def task(x): return work(x)
if __name__ == "__main__":
    with mp.get_context(method).Pool(2) as pool:  # __exit__ calls pool.terminate(): SIGTERM to the workers
        assert pool.map(task, range(8)) == [x * 2 for x in range(8)]
        workers = list(pool._pool)
    print(" ".join(str(w.exitcode) for w in workers))
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pool_terminated_by_its_with_block_delivers_the_workers_records(
    tmp_path: Path, live: LiveReceiver, method: str
) -> None:
    """``with Pool() as pool: pool.map(...)`` terminates the workers while their last events wait for their batch:
    they are flushed first, and each worker still ends as terminate() ends it (killed by SIGTERM, or already gone)."""
    done = _run_script(tmp_path, live, POOL_WITH_BLOCK, f"pool-{method}", method)
    assert done.returncode == 0, done.stderr
    codes = {int(code) for code in done.stdout.split()}
    assert codes <= {0, -15}, done.stdout
    runs = _wait_for(live, f"pool-{method}", 8)
    assert len(runs) == 8
    assert {run["status"] for run in runs} == {"succeeded"}


OWN_SIGTERM_HANDLER = """
import signal, sys, multiprocessing as mp, flowledger
@flowledger.node(id="own-handler")
def work(x): return x
def mine(signum, frame): raise SystemExit(7)
def init(): signal.signal(signal.SIGTERM, mine)
def task(x):
    work(x)
    return signal.getsignal(signal.SIGTERM).__name__
def quiet(x):
    handler = signal.getsignal(signal.SIGTERM)
    return getattr(handler, "__name__", None) or handler.name
if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(1) as pool:
        print(pool.map(quiet, range(2))[0])
    with mp.get_context(sys.argv[1]).Pool(1, initializer=init) as pool:
        print(pool.map(task, range(2))[0])
    with mp.get_context(sys.argv[1]).Pool(1) as pool:
        print(pool.map(task, range(2))[0])
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_programs_own_sigterm_handler_is_left_alone(tmp_path: Path, live: LiveReceiver, method: str) -> None:
    """The SDK installs its flush-on-SIGTERM only where SIGTERM is left at its default, and only in a child that
    records: one that merely imports flowledger keeps the default action, which kills it at once even in the
    middle of a long native call (a Python handler would wait for that call to return)."""
    done = _run_script(tmp_path, live, OWN_SIGTERM_HANDLER, method)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SIG_DFL", "mine", "_flush_on_sigterm"]


# --- a fork while another thread builds the sinks -----------------------------------------

FORK_DURING_FIRST_EVENT = """
import faulthandler, os, sys, threading, time
faulthandler.dump_traceback_later(60, exit=True)
import flowledger
@flowledger.node(id="fork-build")
def work(x): return x
threading.Thread(target=lambda: work(0)).start()  # the SDK's first event: imports the sender under the lock
time.sleep(float(sys.argv[1]))
pid = os.fork()
if pid == 0:
    work(1)  # the child's first event
    os._exit(0)
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("exited", os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.02)
else:
    os.kill(pid, 9); os.waitpid(pid, 0)
    print("hung")
"""


@pytest.mark.parametrize("delay_s", ["0.0", "0.005", "0.02"])
def test_a_child_forked_while_another_thread_builds_the_sinks_does_not_hang(
    tmp_path: Path, live: LiveReceiver, delay_s: str
) -> None:
    """The fork waits for the build (the import of the sender and httpx) instead of leaving its lock to the child."""
    done = _run_script(tmp_path, live, FORK_DURING_FIRST_EVENT, delay_s)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["exited", "0"], done.stderr


FORK_HOLDING_THE_LOCK = """
import os, sys
import flowledger
from flowledger.instrument import _pipeline
p = _pipeline.pipeline()
with p._lock:  # a thread that forks while it holds the pipeline's lock (a signal handler, say) is not stopped
    pid = os.fork()
    if pid == 0:
        with flowledger.run("fork-holding"):
            pass
        flowledger.flush(5)
        os._exit(0)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_thread_holding_the_pipeline_lock_can_fork(tmp_path: Path, live: LiveReceiver) -> None:
    done = _run_script(tmp_path, live, FORK_HOLDING_THE_LOCK)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
    assert len(_wait_for(live, "fork-holding", 1)) == 1


# --- signal handlers that record -----------------------------------------------------------

ALARM_DURING_FIRST_RUN = """
import faulthandler, signal, sys, time
faulthandler.dump_traceback_later(60, exit=True)
import flowledger
from flowledger.instrument.delivery import _build
real_build = _build.build_sinks
def slow_build(*args, **kwargs):  # the alarm fires while the first event builds the sinks, every time
    signal.setitimer(signal.ITIMER_REAL, 0.001)
    time.sleep(0.05)
    return real_build(*args, **kwargs)
_build.build_sinks = slow_build
@flowledger.node(id="sig-handler")
def on_alarm(sig): return sig
@flowledger.node(id="sig-main")
def work(x): return x
signal.signal(signal.SIGALRM, lambda s, f: on_alarm(s))
with flowledger.run("sig-first"):
    work(1)
print(flowledger.flush(5))
stats = flowledger.stats()
print(stats["emitted"], stats["enqueued"], stats["sent"])
"""


def test_a_signal_handler_recording_while_the_sinks_are_built(tmp_path: Path, live: LiveReceiver) -> None:
    """A handler that records a node while the first event builds the sinks neither hangs nor builds them twice:
    its events wait for the build and go out with the rest."""
    done = _run_script(tmp_path, live, ALARM_DURING_FIRST_RUN)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[0] == "True", done.stdout
    emitted, enqueued, sent = (int(n) for n in lines[1].split())
    assert emitted == enqueued == sent, done.stdout
    runs = _wait_for(live, "sig-first", 1)
    assert [run["status"] for run in runs] == ["succeeded"]
    handler_nodes = _wait_for(live, "sig-handler", 1, timeout_s=1.0)
    in_run = [n["node_id"] for n in _nodes(live, runs[0]["run_id"])]
    assert sorted(in_run + ["sig-handler"] * len(handler_nodes)) == ["sig-handler", "sig-main"]


ALARM_RECORDING_RUNS = """
import faulthandler, signal, sys, time, uuid
faulthandler.dump_traceback_later(60, exit=True)
import flowledger
@flowledger.node(id="sig-loop-node")
def work(x): return x
with flowledger.run("sig-warm"): work(0)
flowledger.flush(5)
n = 0
def handler(s, f):
    global n
    n += 1
    # a run id of its own: flowledger._wire.new_event_id's lock (shared with the receiver) is not re-entrant
    with flowledger.run("sig-loop-handler", run_id=str(uuid.uuid4())):
        flowledger.cost(tokens=1)
    signal.setitimer(signal.ITIMER_REAL, 0.0005)
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0005)
for i in range(int(sys.argv[1])):
    with flowledger.run("sig-loop"):
        flowledger.cost(tokens=1)
        work(i)
signal.setitimer(signal.ITIMER_REAL, 0)
print(n, flowledger.flush(20))
"""


def test_signal_handlers_recording_runs_never_deadlock(tmp_path: Path, live: LiveReceiver) -> None:
    """Runs recorded by a handler that interrupts run starts, ends, cost totals and timer wake-ups: no hang."""
    done = _run_script(tmp_path, live, ALARM_RECORDING_RUNS, "4000")
    assert done.returncode == 0, done.stderr
    handled, flushed = done.stdout.split()
    assert int(handled) > 50, done.stdout
    assert flushed == "True"


# --- a forked child leaving its parent's run or node --------------------------------------

CHILD_LEAVES_PARENT_NODE = """
import os, sys
import flowledger
wf, how = sys.argv[1], sys.argv[2]
@flowledger.node(id=wf + "-inner")
def inner(x): return x
@flowledger.node(id=wf + "-forker")
def forker():
    pid = os.fork()
    if pid == 0:
        inner(1000)  # the child's own work in the run is recorded in it
        flowledger.flush(10)  # delivered now, not left to the exit flush's bound on a busy machine
        if how == "raise":
            raise RuntimeError("child-side failure")
        sys.exit(3)
    os.waitpid(pid, 0)
    return "parent ok"
with flowledger.run(wf):
    inner(1)
    forker()
    inner(2)
print(flowledger.flush(10))
"""


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_forked_child_leaving_the_parents_node_and_run_does_not_record_their_end(
    tmp_path: Path, live: LiveReceiver, how: str
) -> None:
    """The parent's node and run succeed; the child, which fails out of both, does not record their end."""
    wf = f"leave-{how}"
    done = _run_script(tmp_path, live, CHILD_LEAVES_PARENT_NODE, wf, how)
    assert done.returncode == 0, done.stderr
    runs = _wait_for(live, wf, 1)
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "succeeded", run
    assert run["error"] is None
    assert not run["finish_conflicts"]
    time.sleep(0.3)
    nodes = _nodes(live, run["run_id"])
    assert sorted((n["node_id"], n["status"]) for n in nodes) == sorted(
        [(f"{wf}-inner", "succeeded")] * 3 + [(f"{wf}-forker", "succeeded")]
    )


CHILD_STATS = """
import json, os, sys
import flowledger
@flowledger.node(id="child-stats")
def work(x): return x
with flowledger.run("child-stats"):
    work(1)
    work(2)
    flowledger.flush(5)
    pid = os.fork()
    if pid == 0:
        work(1000)
        flowledger.flush(5)
        print(json.dumps(flowledger.stats()), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_a_forked_childs_stats_count_only_its_own_events(tmp_path: Path, live: LiveReceiver) -> None:
    done = _run_script(tmp_path, live, CHILD_STATS)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[0])
    assert stats["emitted"] == stats["enqueued"] == stats["sent"] == 1, stats
    assert stats["internal_errors"] == 0


FORK_AFTER_FIRST_RUN = """
import faulthandler, os, sys, flowledger
faulthandler.dump_traceback_later(60, exit=True)
with flowledger.run("fork-after-first-run"):
    pass
pid = os.fork()  # at once: the parent's sender may be making its HTTP client (an SSL context) right now
if pid == 0:
    with flowledger.run("fork-after-first-run-child"):
        pass
    ok = flowledger.flush(20)
    print("ok" if ok else "stuck", flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_child_forked_while_its_parent_makes_its_http_client_delivers(tmp_path: Path, live: LiveReceiver) -> None:
    """A fork waits while the parent's sender makes its client: a child inheriting OpenSSL's set-up half done
    waited for ever on its own first client (about one fork in three), its events never sent."""
    for attempt in range(6):
        done = _run_script(tmp_path, live, FORK_AFTER_FIRST_RUN)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["ok"], (attempt, done.stdout, done.stderr)
    assert len(_runs(live, "fork-after-first-run-child")) == 6
