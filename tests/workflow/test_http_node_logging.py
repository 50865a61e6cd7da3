"""httpx's own INFO line of an http node's request shows the URL masked: on the application's log handlers and in
the attempt's captured log lines (its ``node_logs`` event), neither the URL's password nor its query token."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from types import ModuleType

import httpx
import pytest

from flowledger.testing import CapturedEvents
from flowledger.workflow import main
from tests.instrument._fixed_answer import fixed_answer

Build = Callable[..., ModuleType]

PASSWORD = "S3cr3tPw"
QUERY_TOKEN = "T0KENVALUE"

DEFINITION = """
flowledger: 1
workflow: {id: hooks}
nodes:
  - id: notify
    http:
      url: "URL"
"""


def test_httpx_logs_an_http_nodes_request_with_the_url_masked(
    build: Build, events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    """With httpx's INFO lines on (as logging.basicConfig(level=INFO) shows them), the http node's request is logged
    and captured with the masked URL; the application's own httpx request afterwards is logged as httpx logs it."""
    with fixed_answer(200) as server:
        url = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}/hook?token={QUERY_TOKEN}"
        module = build(DEFINITION.replace("URL", url))
        with caplog.at_level(logging.INFO, logger="httpx"):
            assert main(module.WORKFLOW, ["--input", '{"order": 1}']) == 0
            node_lines = [record.getMessage() for record in caplog.records if record.name == "httpx"]
            node_text = caplog.text
            httpx.post(url, json={}, timeout=10)
        own_lines = [record.getMessage() for record in caplog.records if record.name == "httpx"][len(node_lines) :]
        assert len(server.seen) == 2  # the node's request went out with the real URL
    shown = f"http://***@127.0.0.1:{server.port}/hook?token=***"
    assert node_lines == [f'HTTP Request: POST {shown} "HTTP/1.1 200 OK"']
    captured = [
        record["message"]
        for event in events.all
        if event["kind"] == "node_logs"
        for record in event["data"]["records"]
        if record.get("logger") == "httpx"
    ]
    assert captured == node_lines
    for text in (node_text, json.dumps(events.all)):
        assert PASSWORD not in text
        assert QUERY_TOKEN not in text
    assert len(own_lines) == 1
    assert f"alice:{PASSWORD}@" in own_lines[0]  # the application's own request: its logging is its own business
