"""Complete outputs at ingest: kept in the blob table apart from the ledger, checked, and purged when unreferenced."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, RunEvents, start_receiver


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver with a real SQLite ledger on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"))
    yield receiver
    receiver.stop()


def _full_run(output: Any, *, bad_hash: bool = False) -> RunEvents:
    run = RunEvents().start().node("fetch", output={"preview": True}).finish()
    text = json.dumps(output, separators=(",", ":"))
    (finished,) = [e for e in run.events if e["kind"] == "node_finished"]
    finished["data"]["output_full"] = text
    finished["data"]["output_capture"] = "full"
    digest = hashlib.sha256(text.encode()).hexdigest()
    finished["data"]["output_sha256"] = ("0" * 64) if bad_hash else digest
    return run


def _blobs(live: LiveReceiver) -> dict[str, str]:
    with sqlite3.connect(live.db_path) as db:
        return {str(k): str(v) for k, v in db.execute("SELECT sha256, body FROM blobs")}


def test_a_full_output_is_stored_apart_from_the_ledger_and_served_checked(live: LiveReceiver) -> None:
    """The blob table holds the text; the ledger's payload holds only its hash; /outputs hands it out verified."""
    run = _full_run({"rows": list(range(50))})
    assert live.post(run.events).json()["accepted"] == len(run.events)
    digest = next(e for e in run.events if e["kind"] == "node_finished")["data"]["output_sha256"]
    assert _blobs(live) == {digest: '{"rows":[' + ",".join(str(i) for i in range(50)) + "]}"}
    with sqlite3.connect(live.db_path) as db:
        payloads = [str(body) for (body,) in db.execute("SELECT body FROM payloads")]
    assert not any("output_full" in body for body in payloads)
    assert any(digest in body for body in payloads)
    evidence = live.get(f"/api/runs/{run.run_id}/outputs").json()
    (node,) = evidence["nodes"]
    assert node["problem"] is None
    assert json.loads(node["output"]) == {"rows": list(range(50))}
    assert live.get("/api/runs/nope/outputs").status_code == 404


def test_a_full_output_that_does_not_hash_to_its_sha256_is_rejected_alone(live: LiveReceiver) -> None:
    """Only the lying event is rejected, naming the field; the rest of the batch is stored."""
    run = _full_run({"a": 1}, bad_hash=True)
    answer = live.post(run.events).json()
    assert answer["accepted"] == len(run.events) - 1
    (rejected,) = answer["rejected"]
    assert "event.data.output_full does not hash to event.data.output_sha256" in rejected["error"]
    assert _blobs(live) == {}


def test_purge_removes_only_the_blobs_no_remaining_run_refers_to(live: LiveReceiver) -> None:
    """Two runs share an output, a third has its own: purging the third and one sharer keeps the shared blob."""
    shared_a, shared_b, own = _full_run({"same": 1}), _full_run({"same": 1}), _full_run({"own": 2})
    for run in (shared_a, shared_b, own):
        live.post(run.events)
    assert len(_blobs(live)) == 2
    for run in (own, shared_a):
        assert httpx.delete(f"{live.url}/api/runs/{run.run_id}", timeout=30).status_code == 200
    assert list(_blobs(live).values()) == ['{"same":1}']
    assert httpx.delete(f"{live.url}/api/runs/{shared_b.run_id}", timeout=30).status_code == 200
    assert _blobs(live) == {}
    assert live.get("/api/verify").json()["ok"] is True
