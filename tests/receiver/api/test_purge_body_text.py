"""POST /api/purge with a workflow_id no run can have (a lone surrogate, a NUL, written as JSON escapes): a 400
naming the field, on every engine, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, simple_run, start_receiver


@pytest.fixture(params=["sqlite", "postgres"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver on each engine."""
    config = ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0)
    if request.param == "postgres":
        config = replace(config, db_url=request.getfixturevalue("postgres_url"))
    live = start_receiver(config)
    yield live
    live.stop()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (rb'{"workflow_id": "\ud800"}', "workflow_id holds a lone surrogate"),
        (rb'{"workflow_id": "w\udfff-x"}', "workflow_id holds a lone surrogate"),
        (rb'{"workflow_id": "w\u0000"}', "workflow_id holds a NUL character"),
        (b"[" * 60_000, "nests too deep"),
    ],
    ids=["surrogate", "low-surrogate", "nul", "deep"],
)
def test_a_workflow_id_no_text_can_be_is_400(receiver: LiveReceiver, body: bytes, problem: str) -> None:
    """The purge is refused with 400 naming workflow_id; the ledger is untouched and still verifies."""
    run = simple_run()
    assert receiver.post(run.events).json()["accepted"] == len(run.events)
    answer = httpx.post(f"{receiver.url}/api/purge", content=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("cannot purge: ")
    assert problem in answer.json()["error"]
    verdict = receiver.get("/api/verify").json()
    assert (verdict["ok"], verdict["purges"]) == (True, 0)
