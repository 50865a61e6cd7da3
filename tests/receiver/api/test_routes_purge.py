"""DELETE /api/runs/{run_id} and POST /api/purge: scoped by the API key's project, on the writer, under ingest."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, simple_run, start_receiver, typical_run


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver with two API keys, one per project."""
    receiver = start_receiver(
        ReceiverConfig(db_path=tmp_path / "k.db", sweep_interval_s=0, api_keys={"key-a": "proj-a", "key-b": "proj-b"})
    )
    yield receiver
    receiver.stop()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_delete_is_scoped_by_the_keys_project(keyed: LiveReceiver) -> None:
    """Another project's key gets 404 and the run stays; the owner's key purges it; then it is 404 for all."""
    run = typical_run()
    assert keyed.post(run.events, headers=_auth("key-a")).json()["accepted"] == len(run.events)
    url = f"{keyed.url}/api/runs/{run.run_id}"
    assert httpx.delete(url, headers=_auth("key-b"), timeout=30).status_code == 404
    assert keyed.get(f"/api/runs/{run.run_id}", headers=_auth("key-a")).status_code == 200
    answer = httpx.delete(url, headers=_auth("key-a"), timeout=30)
    assert answer.status_code == 200
    assert answer.json()["runs"] == [run.run_id]
    assert keyed.get(f"/api/runs/{run.run_id}", headers=_auth("key-a")).status_code == 404
    assert httpx.delete(url, headers=_auth("key-a"), timeout=30).status_code == 404
    assert httpx.delete(url, timeout=30).status_code == 401
    with sqlite3.connect(keyed.db_path) as conn:
        body = conn.execute(
            "SELECT p.body FROM ledger l JOIN payloads p ON p.seq = l.seq WHERE l.kind = 'ledger.purge'"
        ).fetchone()[0]
    assert '"by":"api key of project proj-a"' in body
    verdict = keyed.get("/api/verify", headers=_auth("key-a")).json()
    assert verdict["ok"]
    assert verdict["purges"] == 1


def test_unknown_run_is_404(live: LiveReceiver) -> None:
    """Deleting a run that was never stored answers 404."""
    assert httpx.delete(f"{live.url}/api/runs/nope", timeout=30).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b'{"workflow_id": ""}',
        b'{"workflow_id": "w", "before": "soon"}',
        b'{"workflow_id": "w", "x": 1}',
        b"{",
    ],
    ids=["array", "empty", "blank-workflow", "bad-time", "unknown-field", "not-json"],
)
def test_purge_body_errors_are_400(live: LiveReceiver, body: bytes) -> None:
    """A purge request that does not say what to purge is refused with 400 and a sentence."""
    answer = httpx.post(f"{live.url}/api/purge", content=body, timeout=30)
    assert answer.status_code == 400
    assert "cannot purge" in answer.json()["error"]


def test_purge_under_concurrent_ingest(live: LiveReceiver) -> None:
    """Purges interleaved with ingest: every new run is kept, every purged run gone, the chain intact."""
    old = [simple_run(workflow_id="old") for _ in range(40)]
    assert live.post([e for run in old for e in run.events]).json()["accepted"] == 160
    new = [simple_run(workflow_id="new") for _ in range(200)]
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            for start in range(0, len(new), 10):
                batch = [e for run in new[start : start + 10] for e in run.events]
                assert live.post(batch).json()["accepted"] == len(batch)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=ingest)
    thread.start()
    for run in old[:20]:
        assert httpx.delete(f"{live.url}/api/runs/{run.run_id}", timeout=30).status_code == 200
    rest = httpx.post(f"{live.url}/api/purge", json={"workflow_id": "old"}, timeout=30).json()
    thread.join(timeout=60)
    assert errors == []
    assert sorted(rest["runs"]) == sorted(run.run_id for run in old[20:])
    assert live.get("/api/runs", params={"workflow_id": "new", "limit": 1}).json()["total"] == 200
    assert live.get("/api/runs", params={"workflow_id": "old", "limit": 1}).json()["total"] == 0
    verdict = live.get("/api/verify").json()
    assert verdict["ok"], verdict
    assert (verdict["purges"], verdict["runs_purged"], verdict["payloads_erased"]) == (21, 40, 160)
