"""How a generated module's process ends: interrupted by SIGINT, or with a timed-out sync node still sleeping; and
what a program running it in-process under Python's own SIGINT handler gets from Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests._serve import serve_receiver
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env

EXIT_INTERRUPTED: Final = 1
"""The contract's failure code: an interrupted run did not succeed."""
START_TIMEOUT_S: Final = 30.0
"""How long the module may take to import and start its node (a busy machine)."""
EXIT_BOUND_S: Final = 10.0
"""Far less than the node's 15 s sleep (or 60 s for the interrupted one): a process held by it fails the test."""
RECORDS_TIMEOUT_S: Final = 15.0

INTERRUPTED = """
flowledger: 1
workflow: {id: interrupted}
nodes:
  - {id: nap, call: "tests.workflow.nodes:announce_then_sleep", with: {delay_s: 60}}
  - {id: after, call: "tests.workflow.nodes:echo", needs: [nap]}
"""

SPINNING = """
flowledger: 1
workflow: {id: spinning}
nodes:
  - {id: spin, call: "tests.workflow.nodes:announce_then_spin", with: {limit_s: 60}}
  - {id: after, call: "tests.workflow.nodes:echo", needs: [spin]}
"""

IN_PROCESS_DRIVER = """
import asyncio, importlib.util, sys

spec = importlib.util.spec_from_file_location("spinning", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
loop = asyncio.new_event_loop()  # not asyncio.run: Python's own SIGINT handler stays, as in many hosts
try:
    loop.run_until_complete(module.run(7))
    print("returned")
except Exception as exc:  # a worker loop's `except Exception: continue`, which must not swallow Ctrl-C
    print(f"swallowed {type(exc).__name__}")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""
"""A program awaiting the module's ``run()`` on a loop of its own; prints what reached it."""

TIMED_OUT = """
flowledger: 1
workflow: {id: stuckworker}
nodes:
  - {id: nap, call: "tests.workflow.nodes:announce_then_sleep", with: {delay_s: 15}, timeout_s: 0.5}
"""


@pytest.fixture(scope="module")
def receiver_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real receiver on 127.0.0.1 for the modules' records."""
    db = tmp_path_factory.mktemp("receiver") / "ledger.db"
    url, server, thread = serve_receiver(ReceiverConfig(db_path=db, sweep_interval_s=0))
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def _start(module: Path, url: str, tmp_path: Path, *, driver: Path | None = None) -> subprocess.Popen[str]:
    """Start ``python MODULE --input 7`` (or ``python DRIVER MODULE``); return once its node said it started."""
    env = child_env(FLOWLEDGER_ENDPOINT=url, FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"))
    args = [str(module), "--input", "7"] if driver is None else [str(driver), str(module)]
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if line.strip() == "node started" or not line:
            break
    return proc


def _generate(write_definition: Callable[..., Path], text: str, tmp_path: Path, name: str) -> Path:
    from flowledger.codegen import generate

    module = tmp_path / f"{name}.py"
    module.write_text(generate(write_definition(text), display_name="wf.yaml"), encoding="utf-8")
    return module


def _only_run(url: str, workflow_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The workflow's one run as the receiver has it, once ``done(run)`` holds (polled)."""
    deadline = time.monotonic() + RECORDS_TIMEOUT_S
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        runs = httpx.get(f"{url}/api/runs", params={"workflow_id": workflow_id}, timeout=5).json()["runs"]
        if runs:
            run = httpx.get(f"{url}/api/runs/{runs[0]['run_id']}", timeout=5).json()
            if done(run):
                return run
        time.sleep(0.1)
    pytest.fail(f"the receiver did not get the records in time; it has: {run}")


def test_sigint_mid_run_records_the_run_aborted_as_interrupted_and_exits_1(
    write_definition: Callable[..., Path], tmp_path: Path, receiver_url: str
) -> None:
    """Ctrl-C during a node: exit 1, the run is `aborted` (reason interrupted), the node failed, the rest skipped."""
    module = _generate(write_definition, INTERRUPTED, tmp_path, "interrupted")
    proc = _start(module, receiver_url, tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=EXIT_BOUND_S)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == EXIT_INTERRUPTED, err
    run = _only_run(receiver_url, "interrupted", lambda r: r["status"] != "running" and len(r["nodes"]) == 2)
    assert run["status"] == "aborted"
    assert run["error"]["type"].endswith("RunAborted")
    assert run["error"]["node_id"] is None
    assert "interrupted" in run["error"]["message"]
    nodes = {n["node_id"]: n for n in run["nodes"]}
    assert nodes["nap"]["status"] == "failed"
    assert "interrupted" in nodes["nap"]["error"]["message"]
    assert nodes["after"]["status"] == "skipped"
    assert "interrupted" in nodes["after"]["skip_reason"]


def test_sigint_in_an_async_node_under_python_s_own_handler_reaches_the_caller_as_keyboard_interrupt(
    write_definition: Callable[..., Path], tmp_path: Path, receiver_url: str
) -> None:
    """Ctrl-C landing in an async node's code: recorded aborted (interrupted), then KeyboardInterrupt to the caller."""
    module = _generate(write_definition, SPINNING, tmp_path, "spinning")
    driver = tmp_path / "driver.py"
    driver.write_text(IN_PROCESS_DRIVER, encoding="utf-8")
    proc = _start(module, receiver_url, tmp_path, driver=driver)
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=EXIT_BOUND_S)
    finally:
        proc.kill()
        proc.communicate()
    assert out.strip() == "KeyboardInterrupt", err
    run = _only_run(receiver_url, "spinning", lambda r: r["status"] != "running" and len(r["nodes"]) == 2)
    assert run["status"] == "aborted"
    assert run["error"]["type"].endswith("RunAborted")
    assert "interrupted" in run["error"]["message"]
    nodes = {n["node_id"]: n for n in run["nodes"]}
    assert nodes["spin"]["status"] == "failed"
    assert "node `spin` raised KeyboardInterrupt" in nodes["spin"]["error"]["message"]
    assert nodes["after"]["skip_reason"] == "the run was aborted (interrupted)"


def test_a_timed_out_sync_node_still_sleeping_does_not_hold_the_process_exit(
    write_definition: Callable[..., Path], tmp_path: Path, receiver_url: str
) -> None:
    """A sync node past its timeout_s fails the run; the process exits then, not when the function returns."""
    module = _generate(write_definition, TIMED_OUT, tmp_path, "stuckworker")
    proc = _start(module, receiver_url, tmp_path)
    try:
        _, err = proc.communicate(timeout=EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail("the process was still running long after its run ended: the sleeping worker held it")
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 1
    assert "NodeTimeout" in err
    run = _only_run(receiver_url, "stuckworker", lambda r: r["status"] != "running")
    assert run["status"] == "failed"
    assert json.dumps(run["error"]).count("NodeTimeout") >= 1
