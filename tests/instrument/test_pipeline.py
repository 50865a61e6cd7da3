"""The process's pipeline: flush in a fresh process replays what earlier processes spooled."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from flowledger.instrument.delivery._spool import Spool
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env, make_event, recorder, spooled_events

CHILD_TIMEOUT_S = 60.0

FLUSH_ONLY = """
import json, flowledger
ok = flowledger.flush(timeout_s=20.0)
print(json.dumps({"ok": ok, **flowledger.stats()}))
"""

CONFIGURE_THEN_FLUSH = """
import json, sys, flowledger
flowledger.configure(endpoint=sys.argv[1], spool_dir=sys.argv[2])
ok = flowledger.flush(timeout_s=20.0)
print(json.dumps({"ok": ok, **flowledger.stats()}))
"""


def _spool_left_behind(spool_dir: Path, count: int) -> list[str]:
    """Spool files as an earlier process leaves them; returns their event ids."""
    spool = Spool(spool_dir, 64 * 1024 * 1024)
    events = [make_event(i, index=i) for i in range(count)]
    for start in range(0, count, 10):
        spool.write(events[start : start + 10])
    return [e["event_id"] for e in events]


def _child(code: str, *args: str, **env: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=child_env(FLOWLEDGER_EXPORT_SPANS="0", **env),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    stats: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return stats


@pytest.mark.parametrize("how", ["environment", "configure"])
def test_flush_in_a_fresh_process_replays_the_spool(tmp_path: Path, how: str) -> None:
    """flush() before any event (set up from the environment, or just after configure()) delivers the spool."""
    spool_dir = tmp_path / "spool"
    ids = _spool_left_behind(spool_dir, 30)
    with recorder() as rec:
        if how == "environment":
            stats = _child(FLUSH_ONLY, FLOWLEDGER_ENDPOINT=rec.url, FLOWLEDGER_SPOOL_DIR=str(spool_dir))
        else:
            stats = _child(CONFIGURE_THEN_FLUSH, rec.url, str(spool_dir), FLOWLEDGER_ENDPOINT="http://127.0.0.1:9")
        assert stats["ok"] is True
        assert stats["emitted"] == 0
        assert stats["replayed"] == 30
        assert Counter(rec.event_ids()) == Counter(ids)
    assert spooled_events(spool_dir) == []


def test_flush_when_disabled_starts_no_sender(tmp_path: Path) -> None:
    """With FLOWLEDGER_DISABLED=1, flush() sends nothing and leaves the spool alone."""
    spool_dir = tmp_path / "spool"
    _spool_left_behind(spool_dir, 10)
    with recorder() as rec:
        stats = _child(
            FLUSH_ONLY, FLOWLEDGER_ENDPOINT=rec.url, FLOWLEDGER_SPOOL_DIR=str(spool_dir), FLOWLEDGER_DISABLED="1"
        )
        assert stats["ok"] is True
        assert "replayed" not in stats
        assert rec.requests == 0
    assert len(spooled_events(spool_dir)) == 10


def test_flush_refuses_a_timeout_that_is_not_a_number() -> None:
    """flowledger.flush("5") is the caller's mistake, said as one (it was logged as an internal error)."""
    import flowledger
    from flowledger import UsageError

    with pytest.raises(UsageError, match="must be a number of seconds, or None"):
        flowledger.flush("5")  # type: ignore[arg-type]


def test_each_projects_events_are_numbered_apart() -> None:
    """One process sending runs of two projects numbers each project's events from 0 without gaps: the receiver
    counts a producer per project, so one shared count would show each project the other's numbers as lost."""
    import flowledger
    from flowledger.testing import capture_events

    with capture_events() as events:
        for project in ("alpha", "beta", "alpha", "beta", ""):
            with flowledger.run("numbered", project=project):
                pass
    numbers: dict[str | None, list[int]] = {}
    producers = set()
    for event in events.all:
        numbers.setdefault(event.get("project"), []).append(event["producer_seq"])
        producers.add(event["producer_id"])
    assert len(producers) == 1
    assert set(numbers) == {"alpha", "beta", None}
    for seqs in numbers.values():
        assert sorted(seqs) == list(range(seqs[0], seqs[0] + len(seqs)))
