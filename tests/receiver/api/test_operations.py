"""Operations: the stuck-run sweeper, API keys bound to projects, and /metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from flowledger._exceptions import ConfigError
from flowledger._wire import format_ts
from flowledger.receiver._app import create_app
from flowledger.receiver._auth import ApiKeys, keys_from_env, load_keys_file
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._sweeper import sweep_once
from tests.receiver._support import LiveReceiver, Producer, RunEvents, simple_run, start_receiver

# --- sweeper -----------------------------------------------------------------


def _an_hour_later() -> str:
    """A sweep's time an hour from now: by the receiver's clock too, the posted runs have been silent since."""
    return format_ts(time.time_ns() + 3600 * 1_000_000_000)


def _sweep(config: ReceiverConfig, *batches: list[dict]) -> tuple[list[str], dict[str, str]]:  # type: ignore[type-arg]
    """Post batches in-process, sweep once, return the marked ids and each run's status."""

    async def main() -> tuple[list[str], dict[str, str]]:
        app = create_app(config)
        state = app.state.receiver
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
                for batch in batches:
                    assert (await client.post("/v1/events", json={"events": batch})).json()["rejected"] == []
                marked = await sweep_once(state.store, state.writer, config, state.metrics, now=_an_hour_later())
                runs = (await client.get("/api/runs")).json()["runs"]
        return marked, {r["run_id"]: r["status"] for r in runs}

    return asyncio.run(main())


def test_silent_run_is_marked_stuck_with_a_reason(receiver_config: ReceiverConfig) -> None:
    """A running run silent for longer than the threshold is marked stuck; fresh and finished runs are not."""
    old = RunEvents().start().node("fetch")
    fresh = RunEvents()
    fresh.clock_ns = time.time_ns() + 3600 * 1_000_000_000  # its last event is at the sweep's time
    fresh.start()
    done = simple_run()
    marked, statuses = _sweep(receiver_config, old.events + fresh.events + done.events)
    assert marked == [old.run_id]
    assert statuses == {old.run_id: "stuck", fresh.run_id: "running", done.run_id: "succeeded"}


def test_late_event_moves_a_stuck_run_on(receiver_config: ReceiverConfig) -> None:
    """After being marked stuck, a late heartbeat makes the run running again and its finish terminal."""
    run = RunEvents().start().node("fetch")
    first = list(run.events)
    run.heartbeat()
    heartbeat = run.events[len(first) :]
    run.finish()
    finish = run.events[len(first) + 1 :]

    async def main() -> list[str]:
        app = create_app(receiver_config)
        state = app.state.receiver
        seen = []
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
        ):
            for batch in (first, heartbeat, finish):
                await client.post("/v1/events", json={"events": batch})
                seen.append((await client.get(f"/api/runs/{run.run_id}")).json()["status"])
                # the old timestamps make each sweep find the run silent again, until it is finished
                await sweep_once(state.store, state.writer, receiver_config, state.metrics, now=_an_hour_later())
                body = (await client.get(f"/api/runs/{run.run_id}")).json()
                seen.append(body["status"])
                if body["status"] == "stuck":
                    assert "without a heartbeat" in body["stuck_reason"]
        return seen

    assert asyncio.run(main()) == ["running", "stuck", "running", "stuck", "succeeded", "succeeded"]


def test_rebuild_keeps_the_sweepers_verdict(receiver_config: ReceiverConfig) -> None:
    """Refolding does not forget that a run was marked stuck, and counts no drift for it."""
    run = RunEvents().start()

    async def main() -> None:
        app = create_app(receiver_config)
        state = app.state.receiver
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
        ):
            await client.post("/v1/events", json={"events": run.events})
            await sweep_once(state.store, state.writer, receiver_config, state.metrics, now=_an_hour_later())
            drift = (await client.post("/api/rebuild")).json()
            assert drift["clean"] is True
            assert (await client.get(f"/api/runs/{run.run_id}")).json()["status"] == "stuck"

    asyncio.run(main())


def test_sweeper_runs_in_the_background(receiver_config: ReceiverConfig) -> None:
    """With a sweep interval set, a live receiver marks a silent run stuck by itself."""
    live = start_receiver(replace(receiver_config, sweep_interval_s=0.05, stuck_after_s=0.5))
    try:
        run = RunEvents().start(heartbeat_interval_s=0.1)  # silent for half a second by the receiver's clock
        live.post(run.events)
        deadline = time.monotonic() + 10
        while live.get(f"/api/runs/{run.run_id}").json()["status"] != "stuck":
            assert time.monotonic() < deadline, "the sweeper never marked the run"
            time.sleep(0.05)
    finally:
        live.stop()


def test_long_heartbeat_interval_extends_the_threshold(receiver_config: ReceiverConfig) -> None:
    """A run that promised heartbeats only every hour is not stuck after a few minutes."""
    run = RunEvents()
    run.clock_ns = time.time_ns() - 600 * 1_000_000_000
    run.start(heartbeat_interval_s=3600.0)
    marked, statuses = _sweep(receiver_config, run.events)
    assert marked == []
    assert statuses[run.run_id] == "running"


# --- API keys ------------------------------------------------------------------

KEYS = {"token-shop-0123": "shop", "token-bank-4567": "bank"}


@pytest.fixture
def keyed(receiver_config: ReceiverConfig) -> Iterator[LiveReceiver]:
    """A receiver with two API keys, one per project."""
    receiver = start_receiver(replace(receiver_config, api_keys=KEYS))
    yield receiver
    receiver.stop()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_requests_without_a_valid_key_get_401(keyed: LiveReceiver) -> None:
    """No key or a wrong key is 401 on ingest and queries; /healthz stays open."""
    run = simple_run()
    assert keyed.post(run.events).status_code == 401
    assert keyed.post(run.events, headers=_auth("wrong")).status_code == 401
    assert keyed.get("/api/runs").status_code == 401
    assert keyed.get("/api/runs", headers={"Authorization": "Basic abc"}).status_code == 401
    assert keyed.get("/healthz").status_code == 200


def test_a_key_writes_and_reads_only_its_project(keyed: LiveReceiver, caplog: pytest.LogCaptureFixture) -> None:
    """Events take the key's project; another project's events are refused and its runs invisible: a run id
    another project uses too is that project's own run."""
    caplog.set_level(logging.DEBUG)
    shop_run = simple_run()
    answer = keyed.post(shop_run.events, headers=_auth("token-shop-0123")).json()
    assert answer["accepted"] == len(shop_run.events)
    foreign = simple_run(project="bank")
    refused = keyed.post(foreign.events, headers=_auth("token-shop-0123")).json()
    assert refused["accepted"] == 0
    assert "not the project of this API key" in refused["rejected"][0]["error"]
    hijack = RunEvents()
    hijack.run_id = shop_run.run_id
    hijack.heartbeat()
    stolen = keyed.post(hijack.events, headers=_auth("token-bank-4567")).json()
    assert (stolen["accepted"], stolen["rejected"]) == (1, [])  # bank's own run, whatever shop uses the id for
    shop_view = keyed.get("/api/runs", headers=_auth("token-shop-0123")).json()
    assert [r["run_id"] for r in shop_view["runs"]] == [shop_run.run_id]
    assert (shop_view["runs"][0]["project"], shop_view["runs"][0]["status"]) == ("shop", "succeeded")
    bank_run = keyed.get(f"/api/runs/{shop_run.run_id}", headers=_auth("token-bank-4567")).json()
    assert (bank_run["project"], bank_run["status"], bank_run["nodes"]) == ("bank", "running", [])
    other = RunEvents().run_id
    assert keyed.get(f"/api/runs/{other}", headers=_auth("token-bank-4567")).status_code == 404
    assert all("token-shop-0123" not in record.getMessage() for record in caplog.records)


def test_keys_from_file_and_environment(tmp_path: Path) -> None:
    """Keys load from a TOML [keys] table or token=project pairs; malformed input is a ConfigError."""
    path = tmp_path / "keys.toml"
    path.write_text('[keys]\n"abc-0123456789-def" = "shop"\n')
    assert load_keys_file(path) == {"abc-0123456789-def": "shop"}
    assert keys_from_env("a-0123456789abcdef=one, b-0123456789abcdef=two") == {
        "a-0123456789abcdef": "one",
        "b-0123456789abcdef": "two",
    }
    path.write_text("keys = 3\n")
    with pytest.raises(ConfigError, match=r"\[keys\]"):
        load_keys_file(path)
    with pytest.raises(ConfigError):
        keys_from_env("no-project-here")
    with pytest.raises(ConfigError, match="project"):
        ApiKeys({"tok": "bad project!"})


# --- metrics -------------------------------------------------------------------


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_count_ingest_outcomes_and_runs(live: LiveReceiver) -> None:
    """/metrics reports accepted, duplicates, rejected, commits and runs by status in Prometheus text."""
    run = simple_run()
    live.post(run.events)
    live.post([*run.events[:1], {"bad": True}])
    text = live.get("/metrics").text
    assert _sample(text, "flowledger_events_accepted_total") == 4
    assert _sample(text, "flowledger_events_duplicate_total") == 1
    assert _sample(text, "flowledger_events_rejected_total") == 1
    assert _sample(text, "flowledger_commit_seconds_count") == 2
    assert 'flowledger_runs{status="succeeded"} 1' in text
    assert _sample(text, "flowledger_write_queue_depth") == 0
    assert "# TYPE flowledger_commit_seconds histogram" in text


def test_metrics_count_events_lost_in_transit(live: LiveReceiver) -> None:
    """Gaps in a producer's sequence numbers show as events lost."""
    producer = Producer()
    run = RunEvents(producer).start()
    for _ in range(4):
        run.heartbeat()
    run.finish()
    kept = [e for e in run.events if e["producer_seq"] % 2 == 0]  # seqs 0, 2, 4 of 0..5
    live.post(kept)
    assert _sample(live.get("/metrics").text, "flowledger_events_lost") == 2
    live.post(run.events)
    assert _sample(live.get("/metrics").text, "flowledger_events_lost") == 0


def test_openapi_document_is_served(live: LiveReceiver) -> None:
    """/openapi.json describes the contract's routes."""
    doc = live.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/events", "/api/runs", "/api/runs/{run_id}", "/healthz", "/metrics"} <= doc["paths"].keys()


def test_now_is_formatted_like_event_times() -> None:
    """The receiver's clock uses the same timestamp form as events."""
    assert format_ts(0) == "1970-01-01T00:00:00.000000Z"
