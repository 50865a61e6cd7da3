"""``flowledger.flush()`` returns whether everything went out: events a real receiver refused did not."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowledger.receiver._config import IngestLimits, ReceiverConfig
from tests._serve import serve_receiver
from tests.instrument.delivery._sender_support import child_env

CHILD_TIMEOUT_S = 60.0

_SCRIPT = """
import sys
import flowledger

@flowledger.node
def deep(x):
    return [[[[[[x]]]]]]

with flowledger.run("refused"):
    deep(1) if sys.argv[1] == "deep" else None
print(flowledger.flush(timeout_s=10.0))
"""

_ANSWERED_BEFORE = """
import time
import flowledger

@flowledger.node
def deep(x):
    return [[[[[[x]]]]]]

with flowledger.run("refused"):
    deep(1)
deadline = time.monotonic() + 30.0
while flowledger.stats()["rejected"] == 0 and time.monotonic() < deadline:  # the worker sends it on its own
    time.sleep(0.01)
print(flowledger.stats()["rejected"], flowledger.flush(timeout_s=10.0), flowledger.flush(timeout_s=10.0))
"""


@pytest.fixture
def shallow_receiver(tmp_path: Path) -> Iterator[str]:
    """A real receiver that takes events nested at most 6 levels deep (FLOWLEDGER_RECEIVER_MAX_DEPTH)."""
    url, server, thread = serve_receiver(
        ReceiverConfig(db_path=tmp_path / "ledger.db", sweep_interval_s=0, limits=IngestLimits(max_depth=6))
    )
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize(("node", "answer"), [("deep", "False"), ("plain", "True")])
def test_flush_is_false_when_the_receiver_refused_an_event(
    shallow_receiver: str, tmp_path: Path, node: str, answer: str
) -> None:
    """A node output nested past the receiver's limit is refused: flush() says so; a run without one is True."""
    script = tmp_path / "refused.py"
    script.write_text(_SCRIPT)
    env = child_env(
        FLOWLEDGER_ENDPOINT=shallow_receiver, FLOWLEDGER_EXPORT_SPANS="0", FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool")
    )
    done = subprocess.run(
        [sys.executable, str(script), node], env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    assert done.stdout.strip() == answer, done.stderr
    runs = httpx.get(f"{shallow_receiver}/api/runs").json()["runs"]
    assert [run["workflow_id"] for run in runs] == ["refused"]


def test_flush_is_false_when_the_refusal_was_counted_before_it(shallow_receiver: str, tmp_path: Path) -> None:
    """The receiver's refusal arrives before flush() is called: that flush is False (a refusal since the previous
    flush), and the next one, with nothing refused since, is True."""
    script = tmp_path / "answered_before.py"
    script.write_text(_ANSWERED_BEFORE)
    env = child_env(
        FLOWLEDGER_ENDPOINT=shallow_receiver, FLOWLEDGER_EXPORT_SPANS="0", FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool")
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    assert done.stdout.split() == ["1", "False", "True"], done.stderr
