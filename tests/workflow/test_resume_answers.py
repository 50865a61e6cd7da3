"""Reading the run to resume, when what comes back or what is configured is wrong: one clear line, no traceback.

A receiver (a real HTTP server on 127.0.0.1) answering 200 with a body that is not resume evidence, and
FLOWLEDGER_ENDPOINT or FLOWLEDGER_API_KEY values that cannot be used, on the command line and in the http app.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from flowledger.workflow import Call, HttpTrigger, Node, Workflow, http_app, main

WF = Workflow(id="answers", nodes=(Node("a", call=Call("m", "a")),), output="a", definition_sha256="1" * 64)
NOT_EVIDENCE = "error: cannot resume run r1: the receiver's answer is not resume evidence: "
SECRET = "SECRET-key-1"


class _Answering:
    """A server answering every request 200 with one body and content type; ``asked`` counts the requests."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.asked = 0
        answering = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                answering.asked += 1
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def _answering(body: bytes, content_type: str = "application/json") -> Iterator[_Answering]:
    server = _Answering(body, content_type)
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def _run(**extra: Any) -> dict[str, Any]:
    return {"run_id": "r1", "workflow_id": "answers", "status": "failed", "definition_sha256": "1" * 64, **extra}


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (b"<html><body>Sign in</body></html>", "text/html; charset=utf-8", "it is not JSON (the receiver at "),
        (b"[]", "application/json", "it is a list, not an object"),
        (b'{"nodes": []}', "application/json", "`run` is missing, not an object"),
        (json.dumps({"run": _run(), "nodes": {}}).encode(), "application/json", "`nodes` is an object, not a list"),
        (
            json.dumps({"run": _run(), "nodes": [{"node_id": "a", "status": "succeeded"}]}).encode(),
            "application/json",
            "`nodes[0]` (node `a`) succeeded without its output, its hash or a problem saying why",
        ),
        (
            json.dumps({"run": _run(), "nodes": [{"node_id": "a", "status": "succeeded", "output": None}]}).encode(),
            "application/json",
            "`nodes[0]` (node `a`) succeeded without its output, its hash or a problem saying why",
        ),
        (json.dumps({"run": _run(status=7), "nodes": []}).encode(), "application/json", "`run.status` is a number"),
    ],
)
def test_an_answer_that_is_not_resume_evidence_is_one_line_and_exit_1(
    body: bytes, content_type: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 200 whose body is HTML, a list, an object without the run, or a succeeded node without its output: exit
    1 with one line saying what is wrong with the answer, no traceback, nothing run."""
    with _answering(body, content_type) as receiver:
        assert main(WF, ["--resume", "r1", "--endpoint", receiver.url]) == 1
        assert receiver.asked == 1
    err = capsys.readouterr().err
    assert err.startswith(NOT_EVIDENCE), err
    assert said in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("variables", "said"),
    [
        (
            {"FLOWLEDGER_API_KEY": f"{SECRET}\n"},
            "error: FLOWLEDGER_API_KEY holds a line break at character 13 of 13; an API key is visible ASCII without "
            "spaces or line breaks: remove it\n",
        ),
        (
            {"FLOWLEDGER_ENDPOINT": "127.0.0.1:18101"},
            "error: FLOWLEDGER_ENDPOINT '127.0.0.1:18101' cannot be used: it must be an http:// or https:// URL\n",
        ),
        (
            {"FLOWLEDGER_ENDPOINT": "user:pw123@127.0.0.1:18101"},
            "error: FLOWLEDGER_ENDPOINT '***@127.0.0.1:18101' cannot be used: it must be an http:// or https:// URL\n",
        ),
    ],
)
def test_a_variable_that_cannot_be_used_is_named_and_the_key_never_shown(
    variables: dict[str, str], said: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLOWLEDGER_API_KEY with a line break, FLOWLEDGER_ENDPOINT without a scheme: exit 2 naming the variable
    (the URL masked, the key never shown); the receiver is not asked."""
    with _answering(b"{}") as receiver:
        monkeypatch.setenv("FLOWLEDGER_ENDPOINT", receiver.url)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        assert main(WF, ["--resume", "r1"]) == 2
        assert receiver.asked == 0
    assert capsys.readouterr().err == said


def test_a_bad_endpoint_option_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """--endpoint without a scheme is named as --endpoint, exit 2."""
    assert main(WF, ["--resume", "r1", "--endpoint", "127.0.0.1:18101"]) == 2
    assert capsys.readouterr().err == (
        "error: --endpoint '127.0.0.1:18101' cannot be used: it must be an http:// or https:// URL\n"
    )


def test_the_http_apps_resume_names_a_bad_key_and_never_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's resume route (the viewer's button) with FLOWLEDGER_API_KEY holding a line break: a 500 naming
    the variable, the key nowhere in the answer, the receiver not asked."""
    workflow = Workflow(
        id="answers", nodes=WF.nodes, output="a", trigger=HttpTrigger("/go"), definition_sha256="1" * 64
    )
    with _answering(b"{}") as receiver:
        monkeypatch.setenv("FLOWLEDGER_ENDPOINT", receiver.url)
        monkeypatch.setenv("FLOWLEDGER_API_KEY", f"{SECRET}\n")

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=http_app(workflow))
            async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
                return await client.post("/_flowledger/resume", json={"run_id": "r1"})

        answer = asyncio.run(go())
        assert receiver.asked == 0
    assert answer.status_code == 500
    assert answer.json()["error"].startswith("the workflow app cannot resume runs: FLOWLEDGER_API_KEY holds a line")
    assert SECRET not in answer.text
