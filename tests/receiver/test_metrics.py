"""/metrics over a real socket: loss one producer cannot distort, tails that may be lost, and what a key sees."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import ROOT, subprocess_env
from tests.receiver._support import LiveReceiver, Producer, RunEvents, simple_run, start_receiver

KEYS = {"token-shop-0123": "shop", "token-bank-4567": "bank"}


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def keyed(receiver_config: ReceiverConfig) -> Iterator[LiveReceiver]:
    """A receiver with two API keys, one per project."""
    receiver = start_receiver(replace(receiver_config, api_keys=KEYS))
    yield receiver
    receiver.stop()


def test_one_producers_huge_sequence_number_cannot_poison_events_lost(live: LiveReceiver) -> None:
    """producer_seq 2**63-1 from two producers counts at most their own events as lost, once each as a gap."""
    honest = Producer()
    run = RunEvents(honest).start()
    run.heartbeat()
    run.heartbeat()
    run.finish()
    live.post([e for e in run.events if e["producer_seq"] != 1])  # one real gap
    for _ in range(2):
        hostile = simple_run()
        hostile.events[0]["producer_seq"] = 2**63 - 1
        assert live.post(hostile.events).json()["rejected"] == []
    text = live.get("/metrics").text
    assert _sample(text, "flowledger_events_lost") <= 1 + 4 + 4
    assert _sample(text, "flowledger_producers_with_gaps") == 3
    assert _sample(text, "flowledger_producers") == 3


def test_a_producer_silent_with_an_unfinished_run_is_visible(live: LiveReceiver) -> None:
    """Tail loss leaves no gap, but a producer whose newest event is old and whose run never finished shows."""
    run = RunEvents().start().node("fetch")  # its clock is months before now: silent past any stuck threshold
    live.post(run.events)
    text = live.get("/metrics").text
    assert _sample(text, "flowledger_events_lost") == 0
    assert _sample(text, "flowledger_producers_silent_unfinished") == 1
    run.finish()
    live.post(run.events[-1:])
    assert _sample(live.get("/metrics").text, "flowledger_producers_silent_unfinished") == 0


def test_with_api_keys_a_key_sees_its_projects_figures_and_only_operational_totals_of_others(
    keyed: LiveReceiver,
) -> None:
    """A key sees its project's runs, producers, loss, events and event counters; operational series are shared."""
    shop = RunEvents().start()
    shop.events[0]["producer_seq"] = 2**63 - 1
    keyed.post(shop.events, headers=_auth("token-shop-0123"))
    bank = simple_run()
    keyed.post(bank.events, headers=_auth("token-bank-4567"))
    keyed.post(bank.events[:1], headers=_auth("token-bank-4567"))
    shop_text = keyed.get("/metrics", headers=_auth("token-shop-0123")).text
    bank_text = keyed.get("/metrics", headers=_auth("token-bank-4567")).text
    assert 'flowledger_runs{status="running"} 1' in shop_text
    assert 'flowledger_runs{status="succeeded"} 0' in shop_text
    assert 'flowledger_runs{status="succeeded"} 1' in bank_text
    assert 'flowledger_runs{status="running"} 0' in bank_text
    assert _sample(shop_text, "flowledger_ledger_events") == 1
    assert _sample(bank_text, "flowledger_ledger_events") == 4
    assert _sample(shop_text, "flowledger_producers_with_gaps") == 1
    assert _sample(bank_text, "flowledger_producers_with_gaps") == 0
    assert _sample(bank_text, "flowledger_events_lost") == 0
    assert _sample(shop_text, "flowledger_producers_silent_unfinished") == 1
    assert _sample(bank_text, "flowledger_producers_silent_unfinished") == 0
    assert _sample(shop_text, "flowledger_events_accepted_total") == 1
    assert _sample(bank_text, "flowledger_events_accepted_total") == 4
    assert _sample(shop_text, "flowledger_events_duplicate_total") == 0
    assert _sample(bank_text, "flowledger_events_duplicate_total") == 1
    for text in (shop_text, bank_text):  # operational, receiver-wide (documented): both commits of every project
        assert _sample(text, "flowledger_commit_seconds_count") == 3
    assert "shop" not in bank_text
    assert "bank" not in shop_text


def test_with_api_keys_otlp_stats_count_the_callers_project(keyed: LiveReceiver) -> None:
    """/api/otlp/stats counts the key's project's spans; forwarding (off here) stays receiver-wide."""
    span = {"traceId": "ab" * 16, "spanId": "01" * 8, "name": "s", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    for _ in range(2):
        answer = httpx.post(
            f"{keyed.url}/v1/traces",
            content=body,
            headers={"content-type": "application/json", **_auth("token-shop-0123")},
            timeout=30,
        )
        assert answer.status_code == 200
    shop = keyed.get("/api/otlp/stats", headers=_auth("token-shop-0123")).json()
    bank = keyed.get("/api/otlp/stats", headers=_auth("token-bank-4567")).json()
    assert shop["spans"] == {"requests": 2, "accepted": 1, "duplicates": 1, "rejected": 0, "refused_requests": 0}
    assert bank["spans"] == {"requests": 0, "accepted": 0, "duplicates": 0, "rejected": 0, "refused_requests": 0}
    assert shop["forwarding"] is None


_KILLED_PRODUCER = """
import sys, time
import flowledger

run = flowledger.run("killed-producer", name="Killed producer").__enter__()

@flowledger.node
def fetch(x):
    return x

fetch(1)
assert flowledger.flush(timeout_s=10.0)
print("flushed", flush=True)
time.sleep(600)
"""


def test_a_sigkilled_sdk_producer_shows_as_silent_with_an_unfinished_run(
    receiver_config: ReceiverConfig, tmp_path: Path
) -> None:
    """A real SDK process killed with SIGKILL mid-run leaves no gap, and shows as a silent producer instead."""
    live = start_receiver(replace(receiver_config, stuck_after_s=0.001))
    try:
        env = subprocess_env(FLOWLEDGER_ENDPOINT=live.url, FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"))
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILLED_PRODUCER], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "flushed"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        text = live.get("/metrics").text
        assert _sample(text, "flowledger_events_lost") == 0
        assert _sample(text, "flowledger_producers_silent_unfinished") == 1
        runs = live.get("/api/runs").json()["runs"]
        assert [r["status"] for r in runs] == ["running"]
    finally:
        live.stop()
