"""Generated modules run as real subprocesses against a real receiver on 127.0.0.1.

The receiver (`flowledger serve`) keeps its ledger in a temporary SQLite
file; each test generates a module, runs it with ``python OUT.py``, and
asserts on what ``GET /api/runs/{id}`` shows: attempts, items, skips,
concurrency from timestamps, outputs, the run's status and failing node.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowledger.codegen import generate

ROOT = Path(__file__).resolve().parents[2]
POLL_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    paths = [str(ROOT / "src"), str(ROOT), str(ROOT / "examples"), env.get("PYTHONPATH", "")]
    env.update(PYTHONPATH=os.pathsep.join(p for p in paths if p), FLOWLEDGER_ENDPOINT=endpoint, **extra)
    env["FLOWLEDGER_SPOOL_DIR"] = os.environ.get("FLOWLEDGER_SPOOL_DIR", "")
    return env


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `flowledger serve` subprocess on a free local port; yields its base URL."""
    db = tmp_path_factory.mktemp("receiver") / "ledger.db"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = db.with_suffix(".log")
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowledger",
                "serve",
                "--db",
                str(db),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=_env(url),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the receiver did not start: {log.read_text()}")
            time.sleep(POLL_INTERVAL_S)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _generate(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    definition = tmp_path / name
    definition.write_text(textwrap.dedent(text), encoding="utf-8")
    module = tmp_path / "workflow_module.py"
    module.write_text(generate(definition, display_name=name), encoding="utf-8")
    return module


def _run(module: Path, receiver: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(module), *args],
        env=_env(receiver, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _runs(receiver: str, workflow_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The finished runs of ``workflow_id`` (oldest first), waiting until ``count`` are terminal."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        listed = httpx.get(f"{receiver}/api/runs", params={"workflow_id": workflow_id}).json()["runs"]
        done = [r for r in listed if r["status"] in ("succeeded", "failed", "aborted")]
        if len(done) >= count:
            return [httpx.get(f"{receiver}/api/runs/{r['run_id']}").json() for r in reversed(done)]
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(done)} of {count} runs of {workflow_id} arrived: {listed}")
        time.sleep(POLL_INTERVAL_S)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _nodes(run: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    return [n for n in run["nodes"] if n["node_id"] == node_id]


def test_example_workflow_history(tmp_path: Path, receiver: str) -> None:
    """The README example runs: output on stdout; history shows every node, item and the tolerated failure."""
    module = tmp_path / "order_intake.py"
    module.write_text(generate(ROOT / "examples" / "order-intake.yaml", display_name="order-intake.yaml"))
    payload = {"order_id": "A-1", "lines": [{"sku": "apple", "qty": 3}, {"sku": "pear", "qty": 1}]}
    done = _run(module, receiver, "--input", json.dumps(payload))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"accepted": True, "total": 2.3}
    (run,) = _runs(receiver, "order-intake")
    assert run["status"] == "succeeded"
    assert run["trigger_type"] == "manual"
    assert run["workflow_version"] == "3"
    assert run["cost"]["usd"] == pytest.approx(0.001)
    assert [n["item"] for n in _nodes(run, "stock")] == [0, 1]
    assert _nodes(run, "decide")[0]["output"] == {"accepted": True, "total": 2.3}
    notify = _nodes(run, "notify")[0]
    assert notify["status"] == "failed"
    assert "HOOK_TOKEN" in notify["error"]["message"]


def test_failed_run_history(tmp_path: Path, receiver: str) -> None:
    """Exit 1; the history shows each retry, the failing node, skipped dependents and a finished independent branch."""
    module = _generate(
        tmp_path,
        """
        flowledger: 1
        workflow: {id: e2e-failing}
        output: report
        nodes:
          - id: bad
            call: "tests.workflow.nodes:flaky"
            with: {key: e2e, failures: 5}
            retry: {attempts: 2, backoff_s: 0.01}
          - {id: report, call: "tests.workflow.nodes:echo", needs: [bad]}
          - {id: side, call: "tests.workflow.nodes:double"}
        """,
    )
    done = _run(module, receiver, "--input", "2")
    assert done.returncode == 1
    assert "failed at node `bad`: ConnectionError: flaky failure 2 of 5" in done.stderr
    (run,) = _runs(receiver, "e2e-failing")
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "bad"
    attempts = _nodes(run, "bad")
    assert [(n["attempt"], n["status"]) for n in attempts] == [(1, "failed"), (2, "failed")]
    assert attempts[0]["error"]["type"] == "ConnectionError"
    assert _nodes(run, "report")[0]["status"] == "skipped"
    assert _nodes(run, "report")[0]["skip_reason"] == "needs `bad`, which failed"
    assert _nodes(run, "side")[0]["output"] == 4


def test_concurrency_and_map_in_history(tmp_path: Path, receiver: str) -> None:
    """Independent nodes overlap in the recorded timestamps; mapped items respect max_concurrency."""
    module = _generate(
        tmp_path,
        """
        flowledger: 1
        workflow: {id: e2e-concurrent}
        output: each
        nodes:
          - {id: left, call: "tests.workflow.nodes:sleepy", with: {delay_s: 0.3}}
          - {id: right, call: "tests.workflow.nodes:asleepy", with: {delay_s: 0.3}}
          - {id: each, call: "tests.workflow.nodes:sleepy", with: {delay_s: 0.1}, map: {max_concurrency: 2}}
        """,
    )
    done = _run(module, receiver, "--input", "[1, 2, 3, 4]")
    assert done.returncode == 0, done.stderr
    (run,) = _runs(receiver, "e2e-concurrent")
    left, right = _nodes(run, "left")[0], _nodes(run, "right")[0]
    assert max(_ts(left["started_at"]), _ts(right["started_at"])) < min(
        _ts(left["completed_at"]), _ts(right["completed_at"])
    )
    items = _nodes(run, "each")
    assert sorted(n["item"] for n in items) == [0, 1, 2, 3]
    points = sorted(
        [(_ts(n["started_at"]), 1) for n in items] + [(_ts(n["completed_at"]), -1) for n in items],
        key=lambda p: (p[0], p[1]),
    )
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    assert peak == 2
    assert run["output"] == [1, 2, 3, 4]


def test_dry_run_in_history(tmp_path: Path, receiver: str) -> None:
    """`--dry-run` marks the run as a dry run and the effect node as simulated."""
    module = _generate(
        tmp_path,
        """
        flowledger: 1
        workflow: {id: e2e-dry}
        nodes:
          - {id: act, call: "tests.workflow.nodes:counted_effect", with: {key: e2e}, effect: true}
        """,
    )
    done = _run(module, receiver, "--dry-run", "--input", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) is None
    (run,) = _runs(receiver, "e2e-dry")
    assert run["dry_run"] is True
    assert _nodes(run, "act")[0]["simulated"] is True


def test_schedule_serve_loop_in_history(tmp_path: Path, receiver: str) -> None:
    """`--serve --max-runs 2` on a schedule records two schedule-triggered runs, the second after the first."""
    module = _generate(
        tmp_path,
        """
        flowledger: 1
        workflow: {id: e2e-schedule}
        trigger: {type: schedule, schedule: {every_s: 0.2}}
        nodes:
          - {id: tick, call: "tests.workflow.nodes:echo"}
        """,
    )
    done = _run(module, receiver, "--serve", "--max-runs", "2", "--input", '"t"')
    assert done.returncode == 0, done.stderr
    first, second = _runs(receiver, "e2e-schedule", count=2)
    assert {first["trigger_type"], second["trigger_type"]} == {"schedule"}
    assert _ts(second["started_at"]) >= _ts(first["completed_at"])


def test_http_trigger_served_in_history(tmp_path: Path, receiver: str) -> None:
    """`--serve` on an http trigger answers POSTs with the output; the run is recorded with trigger http."""
    module = _generate(
        tmp_path,
        """
        flowledger: 1
        workflow: {id: e2e-http}
        trigger: {type: http, http: {path: /double}}
        nodes:
          - {id: twice, call: "tests.workflow.nodes:double"}
        """,
    )
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(module), "--serve", "--port", str(port)],
        env=_env(receiver),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while True:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/double", json=21, timeout=5.0)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(POLL_INTERVAL_S)
        assert response.status_code == 200
        assert response.json() == 42
        (run,) = _runs(receiver, "e2e-http")
        assert run["trigger_type"] == "http"
        assert run["run_id"] == response.headers["x-flowledger-run-id"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_definitions_run_context_and_a_workflow_that_runs_another(tmp_path: Path, receiver: str) -> None:
    """project, agent_id and intent of a definition reach its runs; a node running another workflow is its parent."""
    child = tmp_path / "child.yaml"
    child.write_text(
        textwrap.dedent(
            """
            flowledger: 1
            workflow: {id: e2e-child}
            project: travel
            agent_id: booker
            intent: book a seat
            nodes:
              - {id: book, call: "tests.workflow.nodes:double"}
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "child_wf.py").write_text(generate(child, display_name="child.yaml"), encoding="utf-8")
    (tmp_path / "delegating.py").write_text(
        "import child_wf\n\n\nasync def delegate(payload):\n    return await child_wf.run(payload)\n", encoding="utf-8"
    )
    module = _generate(
        tmp_path,
        """
        flowledger: 1
        workflow: {id: e2e-parent}
        project: travel
        agent_id: planner
        nodes:
          - {id: delegate, call: "delegating:delegate"}
        """,
    )
    done = _run(module, receiver, "--input", "21", FLOWLEDGER_USER_ID="u-7")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == 42
    (parent,) = _runs(receiver, "e2e-parent")
    (child_run,) = _runs(receiver, "e2e-child")
    assert (parent["project"], parent["agent_id"], parent["intent"], parent["user_id"]) == (
        "travel",
        "planner",
        None,
        "u-7",
    )
    assert (child_run["agent_id"], child_run["intent"], child_run["user_id"]) == ("booker", "book a seat", "u-7")
    assert child_run["parent_run_id"] == parent["run_id"]
    assert [c["run_id"] for c in parent["children"]["runs"]] == [child_run["run_id"]]
