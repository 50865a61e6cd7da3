"""The generated module's command line refuses meaningless flags with one line and exit 2, and honours the rest."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests._serve import serve_receiver
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env

EXIT_USAGE: Final = 2
REFUSAL_TIMEOUT_S: Final = 30.0
"""A refused flag exits once the arguments are read; past this, the module is serving or running instead."""
SERVE_START_TIMEOUT_S: Final = 30.0

SCHEDULE = """
flowledger: 1
workflow: {id: ticker}
trigger: {type: schedule, schedule: {every_s: 1}}
nodes:
  - {id: one, call: "tests.workflow.nodes:echo"}
"""

HTTP = """
flowledger: 1
workflow: {id: webhook}
trigger: {type: http, http: {path: /go}}
nodes:
  - {id: one, call: "tests.workflow.nodes:echo"}
"""


def _module(write_definition: Callable[..., Path], text: str, tmp_path: Path) -> Path:
    from flowledger.codegen import generate

    module = tmp_path / "flags.py"
    module.write_text(generate(write_definition(text), display_name="wf.yaml"), encoding="utf-8")
    return module


def _run(module: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(module), *args],
        cwd=REPO_ROOT,
        env=child_env(FLOWLEDGER_DISABLED="1"),
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_S,
    )


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_runs_below_one_is_a_usage_error(value: str, write_definition: Callable[..., Path], tmp_path: Path) -> None:
    """`--serve --max-runs 0` or `-1` exits 2 naming the option, instead of exiting 0 having run nothing."""
    done = _run(_module(write_definition, SCHEDULE, tmp_path), "--serve", "--max-runs", value)
    assert done.returncode == EXIT_USAGE
    assert "--max-runs" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["100% of %(prog)s", "%(prog)s %d", "50% off"])
def test_help_shows_a_workflow_name_holding_percent_signs(
    name: str, write_definition: Callable[..., Path], tmp_path: Path
) -> None:
    """`--help` of a workflow whose name holds `%(prog)` and another `%` exits 0 showing the name as written."""
    text = f'flowledger: 1\nworkflow: {{id: pct, name: "{name}"}}\nnodes:\n  - {{id: one, call: "m:f"}}\n'
    done = _run(_module(write_definition, text, tmp_path), "--help")
    assert done.returncode == 0, done.stderr
    assert f"Run the workflow {name!r} (pct)." in done.stdout


def test_an_empty_executor_name_is_a_usage_error(write_definition: Callable[..., Path], tmp_path: Path) -> None:
    """`--executor ''` exits 2 naming the known executors, instead of silently meaning local."""
    done = _run(_module(write_definition, SCHEDULE, tmp_path), "--executor", "", "--input", "1")
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1
    assert "--executor" in done.stderr
    assert "local" in done.stderr


def test_serving_on_a_host_that_is_not_an_address_is_one_line_and_exit_2(
    write_definition: Callable[..., Path], tmp_path: Path
) -> None:
    """`--serve --host 'bad host!'` exits 2 with one line, instead of uvicorn's ERROR and exit 3."""
    done = _run(_module(write_definition, HTTP, tmp_path), "--serve", "--host", "bad host!", "--port", "8765")
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: --host 'bad host!'")


@pytest.fixture
def receiver_url(tmp_path: Path) -> Iterator[str]:
    """A real receiver on 127.0.0.1."""
    url, server, thread = serve_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db", sweep_interval_s=0))
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_with_dry_run_makes_every_request_a_dry_run(
    write_definition: Callable[..., Path], tmp_path: Path, receiver_url: str
) -> None:
    """`--serve --dry-run` on an http trigger: a request without `?dry_run=1` is recorded as a dry run too."""
    module = _module(write_definition, HTTP, tmp_path)
    port = _free_port()
    env = child_env(FLOWLEDGER_ENDPOINT=receiver_url, FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"))
    proc = subprocess.Popen(
        [sys.executable, str(module), "--serve", "--dry-run", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while True:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/go", json={"a": 1}, timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the module did not serve: {proc.communicate()[1]}")
                time.sleep(0.1)
        assert answer.status_code == 200
        run_id = answer.headers["x-flowledger-run-id"]
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while True:
            got = httpx.get(f"{receiver_url}/api/runs/{run_id}", timeout=5)
            if got.status_code == 200 and got.json()["status"] != "running":
                break
            assert time.monotonic() < deadline, "the receiver did not get the run"
            time.sleep(0.1)
        assert got.json()["dry_run"] is True
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
