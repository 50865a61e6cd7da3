"""The sender across processes: SIGKILL after spooling, concurrent replay, bounded exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from flowledger.instrument.delivery._spool import Spool
from tests.instrument.delivery._sender_support import (
    HANG,
    REPO_ROOT,
    child_command,
    child_env,
    closed_port_url,
    make_event,
    port_of,
    recorder,
    silent_listener,
    spooled_events,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")

CHILD_TIMEOUT_S = 60.0
EXIT_HANG_GUARD_S = 10.0


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        child_command(*args), cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run(*args: str) -> dict[str, int]:
    done = subprocess.run(
        child_command(*args), cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr
    stats: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return stats


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(CHILD_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL
    if proc.stdout is not None:
        proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()


def _read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def test_sigkill_after_spooling_then_successor_delivers_exactly_once(tmp_path: Path) -> None:
    """A process spools (receiver down) and is SIGKILLed; a successor delivers each event exactly once."""
    spool_dir = tmp_path / "spool"
    down = closed_port_url()
    victim = _start("spool", down, str(spool_dir), "700")
    assert _read_line(victim) == "spooled 700"
    _kill(victim)
    spooled_ids = [e["event_id"] for e in spooled_events(spool_dir)]
    assert len(set(spooled_ids)) == 700
    with recorder(port=port_of(down)) as rec:  # the receiver back where it was
        stats = _run("replay", rec.url, str(spool_dir))
        assert stats["replayed"] == 700
        assert stats["flush_ok"] == 1
        assert Counter(rec.event_ids()) == Counter(spooled_ids)  # each event_id exactly once
    assert spooled_events(spool_dir) == []


def test_claim_of_a_killed_replayer_is_reclaimed(tmp_path: Path) -> None:
    """A replayer killed while its claimed batch hangs in flight leaves a claim the next process takes over."""
    spool_dir = tmp_path / "spool"
    events = [make_event(i) for i in range(5)]
    Spool(spool_dir, 10**7).write(events)
    with recorder([HANG]) as hanging:
        holder = _start("hold", hanging.url, str(spool_dir))
        assert _read_line(holder) == "claimed"
        assert hanging.hanging.wait(CHILD_TIMEOUT_S)
        _kill(holder)
    assert any(".claimed-" in p.name for p in spool_dir.iterdir())
    with recorder() as rec:
        stats = _run("replay", rec.url, str(spool_dir))
        assert stats["replayed"] == 5
        assert rec.event_ids() == [e["event_id"] for e in events]
    assert list(spool_dir.glob("*.json.gz*")) == []


def test_two_processes_replaying_one_spool_never_double_send(tmp_path: Path) -> None:
    """Two processes replay the same spool at once: every event arrives exactly once."""
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, 10**8)
    ids: list[str] = []
    for batch in range(60):
        events = [make_event(i, index=batch) for i in range(5)]
        spool.write(events)
        ids.extend(e["event_id"] for e in events)
    with recorder() as rec:
        procs = [_start("replay", rec.url, str(spool_dir)) for _ in range(2)]
        outputs = [proc.communicate(timeout=CHILD_TIMEOUT_S) for proc in procs]
        assert all(proc.returncode == 0 for proc in procs), outputs
        replayed = [json.loads(out.strip().splitlines()[-1])["replayed"] for out, _ in outputs]
        assert sum(replayed) == 300
        assert Counter(rec.event_ids()) == Counter(ids)
        assert max(Counter(rec.event_ids()).values()) == 1


@pytest.mark.parametrize("receiver", ["refused", "silent"])
def test_exit_with_receiver_down_is_bounded_and_spools(tmp_path: Path, receiver: str) -> None:
    """A process exiting with the receiver down exits promptly and spools every event it held."""
    spool_dir = tmp_path / "spool"
    listener = silent_listener() if receiver == "silent" else None
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}" if listener is not None else closed_port_url()
        started = time.monotonic()
        done = subprocess.run(
            child_command("exit", url, str(spool_dir), "1000"),
            cwd=REPO_ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        elapsed_s = time.monotonic() - started
    finally:
        if listener is not None:
            listener.close()
    assert done.returncode == 0, done.stderr
    assert elapsed_s < EXIT_HANG_GUARD_S  # a hang guard, not a timing threshold
    assert len({e["event_id"] for e in spooled_events(spool_dir)}) == 1000
