"""Spans linked to stored runs and node attempts, and links from runs to an external trace viewer."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowledger.instrument.delivery._otlp_spans import RunMemo, export_request, span_from_event
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._trace_url import trace_url
from flowledger.receiver.cli._commands import show_command
from tests.otel._support import LiveReceiver, receiver_running, run_events

JAEGER = "http://jaeger.example:16686/trace/{trace_id}"


def _post_events(receiver: LiveReceiver, events: list[dict[str, Any]]) -> None:
    answer = receiver.post("/v1/events", json.dumps({"events": events}).encode(), "application/json")
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(events), answer.text


def _post_sdk_spans(receiver: LiveReceiver, events: list[dict[str, Any]]) -> None:
    memo = RunMemo()
    spans = [span for span in (span_from_event(e, memo) for e in events) if span is not None]
    body = json.dumps(export_request(spans, service_name="shop")).encode()
    assert receiver.post("/v1/traces", body, "application/json").json() == {}


@pytest.mark.parametrize("spans_first", [True, False])
def test_spans_name_their_run_and_node_attempt(receiver: LiveReceiver, spans_first: bool) -> None:
    """Whichever arrives first, spans whose ids match a stored run or node attempt carry its run_id and node_id."""
    trace_id, run_span, node_span = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
    run_id, events = run_events(trace_id, run_span, node_span)
    if spans_first:
        _post_sdk_spans(receiver, events)
        _post_events(receiver, events)
    else:
        _post_events(receiver, events)
        _post_sdk_spans(receiver, events)
    doc = receiver.trace(trace_id)
    by_id = {span["span_id"]: span for span in doc["spans"]}
    assert (by_id[run_span]["run_id"], by_id[run_span]["node_id"]) == (run_id, None)
    assert (by_id[node_span]["run_id"], by_id[node_span]["node_id"], by_id[node_span]["attempt"]) == (
        run_id,
        "fetch",
        1,
    )
    assert by_id[node_span]["parent_span_id"] == run_span
    assert doc["run_ids"] == [run_id]
    assert by_id[node_span]["attributes"]["flowledger.workflow.id"] == "order-intake"


def test_a_run_without_spans_still_has_its_trace(receiver: LiveReceiver) -> None:
    """A trace known only from a run's events answers 200 with no spans and the run's id."""
    trace_id = secrets.token_hex(16)
    run_id, events = run_events(trace_id, secrets.token_hex(8), secrets.token_hex(8))
    _post_events(receiver, events)
    doc = receiver.trace(trace_id)
    assert (doc["span_count"], doc["spans"], doc["run_ids"]) == (0, [], [run_id])


def test_runs_carry_a_trace_url_when_a_template_is_set(tmp_path: Path) -> None:
    """With a URL template, run JSON (list and detail) and the trace answer carry trace_url; without, it is null."""
    trace_id = secrets.token_hex(16)
    run_id, events = run_events(trace_id, secrets.token_hex(8), secrets.token_hex(8))
    config = ReceiverConfig(db_path=tmp_path / "links.db", sweep_interval_s=0, trace_url_template=JAEGER)
    expected = f"http://jaeger.example:16686/trace/{trace_id}"
    with receiver_running(config) as live:
        _post_events(live, events)
        assert live.get(f"/api/runs/{run_id}").json()["trace_url"] == expected
        assert live.get("/api/runs").json()["runs"][0]["trace_url"] == expected
        assert live.trace(trace_id)["trace_url"] == expected
    plain = ReceiverConfig(db_path=tmp_path / "links.db", sweep_interval_s=0)
    with receiver_running(plain) as live:
        assert live.get(f"/api/runs/{run_id}").json()["trace_url"] is None


@pytest.mark.parametrize("how", ["db", "url"])
def test_show_prints_the_trace_url(receiver: LiveReceiver, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """flowledger show prints the run's trace URL from FLOWLEDGER_TRACE_URL_TEMPLATE, and --json includes it."""
    trace_id = secrets.token_hex(16)
    run_id, events = run_events(trace_id, secrets.token_hex(8), secrets.token_hex(8))
    _post_events(receiver, events)
    where = ["--db", str(receiver.config.db_path)] if how == "db" else ["--url", receiver.url]
    monkeypatch.setenv("FLOWLEDGER_TRACE_URL_TEMPLATE", "http://phoenix.example:6006/trace/{trace_id}?run={run_id}")
    expected = f"http://phoenix.example:6006/trace/{trace_id}?run={run_id}"
    table = CliRunner().invoke(show_command, [run_id, *where])
    assert table.exit_code == 0, table.output
    assert f"trace  {expected}" in table.output
    as_json = CliRunner().invoke(show_command, [run_id, "--json", *where])
    assert json.loads(as_json.output)["trace_url"] == expected
    monkeypatch.delenv("FLOWLEDGER_TRACE_URL_TEMPLATE")
    assert "trace  " not in CliRunner().invoke(show_command, [run_id, *where]).output


def test_show_reports_a_bad_template_in_one_line(receiver: LiveReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """A template without {trace_id} is one clear error line and exit 2, not a traceback."""
    run_id, events = run_events(secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8))
    _post_events(receiver, events)
    monkeypatch.setenv("FLOWLEDGER_TRACE_URL_TEMPLATE", "http://jaeger:16686/search")
    result = CliRunner().invoke(show_command, [run_id, "--db", str(receiver.config.db_path)])
    assert result.exit_code == 2  # a setting that cannot be used: a usage error
    assert result.output.startswith("error: FLOWLEDGER_TRACE_URL_TEMPLATE=")
    assert len(result.output.strip().splitlines()) == 1


def test_template_placeholders_are_url_quoted() -> None:
    """Only {trace_id} and {run_id} are replaced, quoted for a URL; other braces stay as written."""
    assert trace_url("http://x/{trace_id}/{other}", "ab") == "http://x/ab/{other}"
    assert trace_url("http://x/{trace_id}?r={run_id}", "ab", "a b") == "http://x/ab?r=a%20b"
    assert trace_url(None, "ab") is None
    assert trace_url("http://x/{trace_id}", None) is None
