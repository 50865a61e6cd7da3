"""Secrets sent in headers or URLs never reach a log line: OTLP headers checked when set, failures described
without their text, and the SDK's own requests logged by httpx with their URL masked."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowledger._wire import format_ts, new_event_id
from flowledger.instrument.delivery._otlp_sink import OtlpSender
from flowledger.instrument.delivery._sender import Sender
from tests.instrument.delivery._sender_support import (
    REPO_ROOT,
    child_env,
    make_settings,
    recorder,
    wait_until,
)

SECRET = "SECRÉT99"
"""A header value httpx cannot encode (its codec is ASCII): the error it raises quotes the whole value."""
HEADER_VALUES = [SECRET, "SECRET%0Aevil", "SECRET\r\nX-Evil: 1"]
"""As written: percent-decoded when sent, as the OTel specification says."""


def _node_finished() -> dict[str, Any]:
    """A node_finished event, as the hooks write it, which gives one span."""
    return {
        "v": 1,
        "event_id": new_event_id(),
        "kind": "node_finished",
        "run_id": new_event_id(),
        "seq": 1,
        "ts": format_ts(0),
        "producer_id": new_event_id(),
        "producer_seq": 1,
        "data": {
            "node_id": "fetch",
            "attempt": 1,
            "status": "succeeded",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
            "started_at": "2026-11-22T06:33:22.500000Z",
            "duration_ms": 3.0,
        },
    }


CHILD = """
import flowledger
@flowledger.node
def fetch(x):
    return x
with flowledger.run("secret-headers"):
    fetch(1)
flowledger.flush(timeout_s=20.0)
"""


@pytest.mark.parametrize("value", HEADER_VALUES)
@pytest.mark.parametrize("sinks", ["receiver", "otlp"])
def test_a_process_with_an_unsendable_otlp_header_never_prints_it_and_still_exports(
    tmp_path: Path, value: str, sinks: str
) -> None:
    """OTEL_EXPORTER_OTLP_HEADERS='api-key=SECRÉT99' (or a line break): one warning naming the header, never its value;
    the spans still reach the OTLP endpoint, without the headers."""
    with recorder() as rec:
        done = subprocess.run(
            [sys.executable, "-c", CHILD],
            cwd=REPO_ROOT,
            env=child_env(
                FLOWLEDGER_ENDPOINT=rec.url,
                FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
                FLOWLEDGER_EXPORT_SPANS="1",
                FLOWLEDGER_SINKS=sinks,
                OTEL_EXPORTER_OTLP_ENDPOINT=rec.url,
                OTEL_EXPORTER_OTLP_HEADERS=f"x-tenant=t1,api-key={value}",
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert wait_until(lambda: len(rec.traces) >= 1)
        assert all("api-key" not in names for names in rec.headers_seen)
    assert "SECR" not in done.stdout + done.stderr
    assert done.stderr.count("OTEL_EXPORTER_OTLP_HEADERS") == 1
    assert "header 'api-key' whose value holds" in done.stderr


@pytest.mark.parametrize("value", HEADER_VALUES)
@pytest.mark.parametrize("sink", ["spans", "otlp"])
def test_an_export_failing_on_a_header_is_logged_without_its_value(
    tmp_path: Path, value: str, sink: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Settings made without configure()'s checks: the export that fails on the header logs the failure's type, never
    the exception's text (``UnicodeEncodeError('ascii', 'SECRÉT99', ...)``, ``Illegal header value b'...'``)."""
    with recorder() as rec:
        settings = make_settings(
            tmp_path / "spool",
            rec.url,
            otlp_traces_endpoint=f"{rec.url}/v1/traces",
            otlp_headers=(("api-key", value),),
            max_retries=0,
        )
        sender = Sender(settings, export_spans=True) if sink == "spans" else OtlpSender(settings)
        with caplog.at_level(logging.WARNING, logger="flowledger"):
            sender.submit(_node_finished(), 500)
            sender.flush(5.0)
            sender.shutdown(1.0)
    warnings = [r.getMessage() for r in caplog.records]
    assert any("Error" in message for message in warnings), warnings
    assert not any("SECR" in message for message in warnings)


ENDPOINT_PASSWORD = "PASSW0RD"
ENDPOINT_TOKEN = "TOK3N"


def test_httpx_logs_the_sdks_own_requests_with_the_endpoint_masked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With httpx's INFO lines shown (logging.basicConfig(level=INFO)), the SDK's requests name its endpoint masked;
    the application's own httpx request is logged as httpx logs it."""
    with recorder() as rec:
        endpoint = rec.url.replace("http://", f"http://alice:{ENDPOINT_PASSWORD}@") + f"/?token={ENDPOINT_TOKEN}"
        sender = Sender(make_settings(tmp_path / "spool", endpoint), export_spans=True)
        with caplog.at_level(logging.INFO, logger="httpx"):
            sender.submit(_node_finished(), 500)
            assert sender.flush(5.0)
            assert wait_until(lambda: len(rec.traces) >= 1)
            sender.shutdown(1.0)
            sdk_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
            httpx.post(f"{endpoint}v1/events", json={"events": []}, timeout=10)
        own_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"][len(sdk_lines) :]
    shown = rec.url.replace("http://", "http://***@")
    assert f"HTTP Request: POST {shown}/v1/events?token=***" in "\n".join(sdk_lines)
    assert f"HTTP Request: POST {shown}/v1/traces?token=***" in "\n".join(sdk_lines)
    assert not any(ENDPOINT_PASSWORD in line or ENDPOINT_TOKEN in line for line in sdk_lines)
    assert len(own_lines) == 1
    assert f"token={ENDPOINT_TOKEN}" in own_lines[0]  # the application's logging is its own business
