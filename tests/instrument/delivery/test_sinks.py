"""Sinks chosen by configuration: OTLP only, receiver and JSONL at once, memory; each keeps the delivery guarantees."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger._exceptions import ConfigError
from flowledger.instrument import _config
from flowledger.instrument._config import SinkKind, SinkSpec, parse_sinks, settings_from_env
from flowledger.instrument._pipeline import _create, pipeline
from flowledger.instrument.delivery._otlp_sink import OtlpSender
from flowledger.receiver._config import ReceiverConfig
from flowledger.testing import memory_sink
from tests.instrument.delivery._sender_support import (
    REPO_ROOT,
    child_env,
    closed_port_url,
    make_settings,
    port_of,
    spooled_events,
    wait_until,
)
from tests.otel._support import LiveReceiver, receiver_running

CHILD_TIMEOUT_S = 60.0


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[LiveReceiver]:
    with receiver_running(ReceiverConfig(db_path=tmp_path / "ledger.db")) as live:
        yield live


@pytest.fixture
def restore_pipeline() -> Iterator[None]:
    before = pipeline().settings
    yield
    flowledger.shutdown(0.5)
    _create(before)


def _workflow(fail: bool = False) -> tuple[str, str]:
    @flowledger.node
    def step(x: int) -> int:
        if fail and x == 2:
            raise ValueError("two is not allowed")
        return x + 1

    with flowledger.run("sinks-test", name="Sinks test") as run:
        step(1)
        try:
            step(2)
        except ValueError:
            pass
    return run.run_id, run.trace_id


# --- configuration -----------------------------------------------------------


def test_sinks_parse_from_text_and_lists() -> None:
    """Comma-separated text and lists give the same specs; jsonl carries its file."""
    specs = parse_sinks("receiver, otlp ,jsonl:/tmp/a.jsonl,memory")
    assert specs == (
        SinkSpec(SinkKind.RECEIVER),
        SinkSpec(SinkKind.OTLP),
        SinkSpec(SinkKind.JSONL, Path("/tmp/a.jsonl")),
        SinkSpec(SinkKind.MEMORY),
    )
    assert parse_sinks(["memory", SinkSpec(SinkKind.OTLP)]) == (SinkSpec(SinkKind.MEMORY), SinkSpec(SinkKind.OTLP))


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("receiver,kafka", "'kafka'"),
        ("jsonl", "'jsonl'"),
        ("jsonl:", "'jsonl:'"),
        ("memory:x", "'memory:x'"),
        ("memory,memory", "'memory'"),
        ("", "at least one"),
    ],
)
def test_configure_names_the_bad_sink_entry(value: str, named: str, restore_pipeline: None) -> None:
    """configure(sinks=...) raises ConfigError whose message names the entry at fault."""
    with pytest.raises(ConfigError, match=named):
        flowledger.configure(sinks=value)


def test_a_bad_sinks_variable_is_reported_once_and_the_receiver_kept(caplog: pytest.LogCaptureFixture) -> None:
    """FLOWLEDGER_SINKS with an unknown entry warns naming it and falls back to the receiver."""
    _config._forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({"FLOWLEDGER_SINKS": "jsonl:/tmp/x.jsonl,carrier-pigeon"})
    assert settings.sinks == (SinkSpec(SinkKind.RECEIVER),)
    assert "'carrier-pigeon'" in caplog.text
    _config._forget_reports()


# --- memory --------------------------------------------------------------------


def test_the_memory_sink_keeps_events_in_the_process(tmp_path: Path, restore_pipeline: None) -> None:
    """FLOWLEDGER_SINKS=memory: nothing is sent, everything can be read back, bounded by queue_max_items."""
    flowledger.configure(sinks="memory", spool_dir=tmp_path / "spool", queue_max_items=3)
    run_id, _ = _workflow()
    sink = memory_sink()
    assert sink is not None
    assert [e["run_id"] for e in sink][:1] == [run_id]
    assert len(sink) == 3
    stats = flowledger.stats()
    assert stats["sent"] == 3
    assert stats["dropped_queue_full"] == stats["emitted"] - 3 > 0
    assert not (tmp_path / "spool").exists()


# --- OTLP only -----------------------------------------------------------------


def test_otlp_only_sends_spans_with_exception_events_and_no_events(
    tmp_path: Path, receiver: LiveReceiver, restore_pipeline: None
) -> None:
    """The otlp sink alone: the run and its attempts reach /v1/traces as spans; /v1/events gets nothing."""
    flowledger.configure(sinks="otlp", endpoint=receiver.url, spool_dir=tmp_path / "spool", otlp_traces_endpoint=None)
    _, trace_id = _workflow(fail=True)
    assert flowledger.flush(10.0)
    assert memory_sink() is None
    runs = receiver.get("/api/runs").json()
    assert runs["total"] == 0  # no events: spans only
    stats = flowledger.stats()
    assert stats["sent"] == stats["emitted"]
    spans = receiver.wait_for(f"/api/traces/{trace_id}", lambda body: len(body.get("spans", [])) >= 3)["spans"]
    failed = [s for s in spans if s.get("status_code") == 2 or "two is not allowed" in json.dumps(s)]
    assert failed, spans


def test_otlp_spools_while_the_backend_is_down_and_replays_when_it_is_back(tmp_path: Path) -> None:
    """Unlike best-effort span export, the otlp sink spools what the backend did not take and sends it later."""
    spool = tmp_path / "spool"
    closed = closed_port_url()
    down = make_settings(spool, otlp_traces_endpoint=closed + "/v1/traces", max_retries=0)
    sink = OtlpSender(down, spool_dir=spool)
    events = _finished_events(3)
    for event in events:
        sink.submit(event, 400)
    assert not sink.flush(3.0)
    assert len(spooled_events(spool)) == len(events)
    sink.shutdown(0.5)
    with receiver_running(ReceiverConfig(db_path=tmp_path / "ledger.db"), port=port_of(closed)) as live:
        up = make_settings(spool, otlp_traces_endpoint=f"{live.url}/v1/traces")  # the backend back where it was
        again = OtlpSender(up, spool_dir=spool)
        assert again.flush(10.0)
        assert wait_until(lambda: not spooled_events(spool))
        assert again.stats()["replayed"] == len(events)
        trace_id = events[0]["data"]["trace_id"]
        live.wait_for(f"/api/traces/{trace_id}", lambda body: len(body.get("spans", [])) == 3)
        again.shutdown(0.5)


def _finished_events(count: int) -> list[dict[str, Any]]:
    from flowledger._wire import format_ts, new_event_id
    from tests.instrument.delivery._sender_support import make_event

    trace_id = "ab" * 16
    out = []
    for i in range(count):
        event = make_event(i)
        event["kind"] = "node_finished"
        event["data"] = {
            "node_id": f"n{i}",
            "attempt": 1,
            "status": "succeeded",
            "trace_id": trace_id,
            "span_id": f"{i + 1:016x}",
            "started_at": format_ts(1_700_000_000_000_000_000 + i),
            "duration_ms": 5,
            "event": new_event_id(),
        }
        out.append(event)
    return out


# --- several at once, and exit ----------------------------------------------------


def test_receiver_and_jsonl_at_once_each_get_every_event(
    tmp_path: Path, receiver: LiveReceiver, restore_pipeline: None
) -> None:
    """receiver,jsonl:PATH: the receiver stores the run and the file holds the same events."""
    path = tmp_path / "events.jsonl"
    flowledger.configure(sinks=f"receiver,jsonl:{path}", endpoint=receiver.url, spool_dir=tmp_path / "spool")
    run_id, _ = _workflow()
    assert flowledger.flush(10.0)
    stats = flowledger.stats()
    assert stats[f"jsonl:{path}.sent"] == stats["receiver.sent"] == stats["emitted"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {e["run_id"] for e in lines} == {run_id}
    assert len(lines) == stats["emitted"]
    run = receiver.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "succeeded"


def test_a_run_named_with_a_lone_surrogate_is_kept_whole_and_alike_by_every_sink(
    tmp_path: Path, receiver: LiveReceiver, restore_pipeline: None
) -> None:
    """A run whose name holds a lone surrogate (no UTF-8 form) loses no event to any sink: the JSONL file and
    the receiver both keep run_started, the node and run_finished, the name with U+FFFD for the surrogate."""
    path = tmp_path / "events.jsonl"
    flowledger.configure(sinks=f"receiver,jsonl:{path}", endpoint=receiver.url, spool_dir=tmp_path / "spool")

    @flowledger.node
    def step(x: int) -> int:
        return x

    with flowledger.run("surrogate-test", name="a\ud800b", version="v\udcff1") as run:
        step(1)
    assert flowledger.flush(10.0)
    stats = flowledger.stats()
    assert stats["dropped_unserializable"] == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["kind"] for e in lines] == ["run_started", "node_finished", "run_finished"]
    assert {e["data"]["workflow_name"] for e in lines if e["kind"].startswith("run_")} == {"a\ufffdb"}
    stored = receiver.get(f"/api/runs/{run.run_id}").json()
    assert (stored["workflow_name"], stored["status"]) == ("a\ufffdb", "succeeded")
    assert stats[f"jsonl:{path}.sent"] == stats["receiver.sent"] == stats["emitted"] == len(lines)


EXIT_SCRIPT = """
import json, sys, flowledger
@flowledger.node
def step(x):
    return x
with flowledger.run("exit-test"):
    for i in range(int(sys.argv[1])):
        step(i)
print(json.dumps({"emitted": flowledger.stats()["emitted"]}))
"""


def test_at_exit_each_sink_spools_what_it_could_not_deliver(tmp_path: Path) -> None:
    """A process exiting with the receiver and the OTLP backend down leaves every event in each sink's spool,
    and the JSONL file holds them all."""
    spool = tmp_path / "spool"
    path = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, "300"],
        cwd=REPO_ROOT,
        env=child_env(
            FLOWLEDGER_SINKS=f"receiver,otlp,jsonl:{path}",
            FLOWLEDGER_ENDPOINT=closed_port_url(),
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=closed_port_url() + "/v1/traces",
            FLOWLEDGER_SPOOL_DIR=str(spool),
        ),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    emitted = json.loads(done.stdout)["emitted"]
    assert len(spooled_events(spool)) == emitted  # the receiver's spool
    otlp_spools = list(spool.glob("otlp-*"))
    assert len(otlp_spools) == 1
    assert len(spooled_events(otlp_spools[0])) == emitted
    in_file = len(path.read_text().splitlines())
    jsonl_spools = list(spool.glob("jsonl-*"))
    waiting = len(spooled_events(jsonl_spools[0])) if jsonl_spools else 0
    assert in_file + waiting == emitted
