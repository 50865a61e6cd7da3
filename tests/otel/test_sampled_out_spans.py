"""A run sampled out is gone from a real receiver, also when one of its nodes ends after it (real subprocesses)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.otel._support import LiveReceiver, subprocess_env

APP = """
import sys
import threading

import flowledger
from flowledger import ContextThreadPoolExecutor

FAIL = sys.argv[1] == "fail"
started, release = threading.Event(), threading.Event()


@flowledger.node
def late(x):
    started.set()
    assert release.wait(30)
    if FAIL:
        raise ValueError("late failure")
    return x


with ContextThreadPoolExecutor(max_workers=1) as pool:
    with flowledger.run("dropped", sample_rate=0) as dropped:
        future = pool.submit(late, 5)
        assert started.wait(30)
    release.set()
    future.exception(30)
    with flowledger.run("kept", sample_rate=1) as kept:
        pool.submit(lambda: None).result(30)
print(dropped.run_id, dropped.trace_id, kept.trace_id)
sys.exit(0 if flowledger.flush(timeout_s=10.0) else 3)
"""


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_a_node_ending_after_its_sampled_out_run_leaves_no_run_and_no_span(
    receiver: LiveReceiver, tmp_path: Path, outcome: str
) -> None:
    """The late node of a dropped run sends no event and no span: the receiver only counts the run sampled out."""
    script = tmp_path / "late_node.py"
    script.write_text(textwrap.dedent(APP), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), outcome],
        env=subprocess_env(FLOWLEDGER_ENDPOINT=receiver.url, FLOWLEDGER_EXPORT_SPANS="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    run_id, dropped_trace, kept_trace = done.stdout.split()
    receiver.wait_for(f"/api/traces/{kept_trace}", lambda d: d["span_count"] == 1)  # spans do go out
    assert receiver.get("/api/sampling").json() == {"workflows": [{"workflow_id": "dropped", "runs_sampled_out": 1}]}
    assert receiver.get(f"/api/runs/{run_id}").status_code == 404
    assert receiver.get("/api/runs", params={"workflow_id": "dropped"}).json()["total"] == 0
    assert receiver.get(f"/api/traces/{dropped_trace}").status_code == 404
    assert receiver.get("/api/otlp/stats").json()["spans"]["accepted"] == 1
