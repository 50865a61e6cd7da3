"""The delivery path is safe across fork: no import left to a worker thread, no lock inherited held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from tests.instrument.delivery._sender_support import REPO_ROOT, child_env, closed_port_url, recorder

CHILD_TIMEOUT_S = 60.0
FORK_HANG_GUARD_S = 10.0

_IMPORTS_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from flowledger.instrument._config import Settings
    from flowledger.instrument.delivery._sender import Sender

    before = set(sys.modules)
    for url in sys.argv[1:3]:
        settings = Settings(endpoint=url, spool_dir=Path(sys.argv[3]), max_retries=0, request_timeout_s=5.0)
        sender = Sender(settings, export_spans=True)
        sender.submit({"v": 1, "kind": "heartbeat", "run_id": "r", "data": {}}, 100)
        sender.flush(10.0)
        sender.shutdown(1.0)
    print(json.dumps(sorted(set(sys.modules) - before)))
    """
)


def test_worker_threads_import_nothing(tmp_path: Path) -> None:
    """Building the HTTP client and posting (answered or refused) imports no module the sender did not import."""
    with recorder() as rec:
        done = subprocess.run(
            [sys.executable, "-c", _IMPORTS_CHILD, rec.url, closed_port_url(), str(tmp_path / "spool")],
            cwd=REPO_ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr
        assert rec.requests >= 1
    assert json.loads(done.stdout) == []


def _fork_and_wait(child: object) -> int | None:
    """Fork, run ``child()`` in the child (exit 0 if it returns true), return its exit code or None if it hung."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if child() else 2  # type: ignore[operator]
        finally:
            os._exit(code)
    deadline = time.monotonic() + FORK_HANG_GUARD_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_run_memo_lock_held_at_fork_is_fresh_in_the_child() -> None:
    """A child forked while the span builder's run memo is locked can still build spans."""
    from flowledger.instrument.delivery import _otlp_spans as _otlp

    event = {"kind": "run_started", "run_id": "r-fork", "data": {"workflow_id": "wf"}}
    with _otlp._RUNS._lock:  # held by this thread at the moment of fork, as the sender thread may hold it
        code = _fork_and_wait(lambda: _otlp.span_from_event(event) is None and _otlp._RUNS.get("r-fork"))
    assert code == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_cost_lock_held_at_fork_is_fresh_in_the_child() -> None:
    """A run that crosses a fork while another thread adds to its cost still takes cost in the child."""
    import flowledger
    from flowledger.instrument import _cost
    from flowledger.testing import capture_events

    with capture_events(), flowledger.run("forked") as run:

        def child() -> bool:
            flowledger.cost(tokens=3)  # would wait forever on a lock inherited held
            return run.cost.tokens == 3

        with _cost._lock:  # held by this thread at the moment of fork, as another thread adding cost may hold it
            code = _fork_and_wait(child)
    assert code == 0
