"""Forwarding keeps its secrets and its URL: header values checked at start and never logged, the endpoint's
credentials out of every log line (httpx's included), the signal path joined before the endpoint's query."""

from __future__ import annotations

import base64
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowledger._exceptions import ConfigError
from flowledger.receiver._config import ReceiverConfig, config_from_env, parse_forward_endpoint
from tests.otel._support import POLL_INTERVAL_S, POLL_TIMEOUT_S, otlp_json, receiver_running, subprocess_env
from tests.receiver.otlp._stock import make_spans

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
HEADERS_ENV = "FLOWLEDGER_RECEIVER_FORWARD_HEADERS"
ENDPOINT_ENV = "FLOWLEDGER_RECEIVER_FORWARD_ENDPOINT"


@dataclass
class Upstream:
    """An OTLP/HTTP upstream on 127.0.0.1 that answers 200 and keeps what it was sent."""

    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """Each request's path (with its query) and headers (names lower-cased, values as Latin-1 decodes them)."""


@contextmanager
def upstream_running() -> Iterator[Upstream]:
    """A real HTTP server in a thread of the test process, for the receiver to forward to."""
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append((self.path, {name.lower(): value for name, value in self.headers.items()}))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Upstream(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _span_body() -> bytes:
    spans, _trace_id, _ids = make_spans("forwarded-app")
    return json.dumps(otlp_json(spans)).encode()


def _wait_for_forwarding(url: str) -> dict[str, Any]:
    """The forwarding counters once one body was sent or failed (polled, no timing asserted)."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        forwarding: dict[str, Any] = httpx.get(f"{url}/api/otlp/stats", timeout=10).json()["forwarding"]
        if forwarding["sent"] + forwarding["failed"] >= 1:
            return forwarding
        assert time.monotonic() < deadline, f"nothing was forwarded: {forwarding}"
        time.sleep(POLL_INTERVAL_S)


@contextmanager
def serving(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[tuple[str, Path]]:
    """``flowledger serve`` as a child process, its stderr in a file; yields its URL and that file. Stopped with
    SIGINT, so that what it logs is all written when the block ends."""
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "flowledger", "serve", "--db", str(tmp_path / "rx.db"), "--port", "0", *args]
    with log.open("w") as err:
        child = subprocess.Popen(command, stderr=err, text=True, env=subprocess_env(**env))
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "flowledger receiver on " not in log.read_text(errors="replace"):
            assert child.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(POLL_INTERVAL_S)
        url = log.read_text(errors="replace").split("flowledger receiver on ", 1)[1].split()[0]
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert child.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the receiver did not answer"
            time.sleep(POLL_INTERVAL_S)
        yield url, log
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# --- header values -------------------------------------------------------------------------------------------------


def test_a_latin_1_header_value_is_forwarded_and_never_logged(tmp_path: Path) -> None:
    """`x-api-key=SECR%C3%89T42` reaches the upstream as the bytes of SECRÉT42; the receiver's log never shows it."""
    with upstream_running() as upstream:
        env = {ENDPOINT_ENV: upstream.url, HEADERS_ENV: "x-api-key=SECR%C3%89T42"}
        with serving(tmp_path, env) as (url, log):
            response = httpx.post(
                f"{url}/v1/traces", content=_span_body(), headers={"content-type": "application/json"}
            )
            assert response.status_code == 200
            forwarding = _wait_for_forwarding(url)
    text = log.read_text(errors="replace")
    assert (forwarding["sent"], forwarding["failed"]) == (1, 0), text
    ((path, headers),) = upstream.requests
    assert (path, headers["x-api-key"]) == ("/v1/traces", "SECRÉT42")
    assert "SECR" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        ("SECR%E2%82%ACT42", "holds a character beyond Latin-1 once decoded"),
        ("SECR%01T42", "holds a control character"),
        ("SECR%0AT42", "holds a control character"),
        ("SECR%7FT42", "holds a control character"),
        ("SECRT42%20", "starts or ends with a space or tab once decoded"),
        ("%09SECRT42", "starts or ends with a space or tab once decoded"),
    ],
)
def test_a_header_value_that_cannot_be_sent_is_refused_by_name(encoded: str, problem: str) -> None:
    """A value HTTP cannot carry is a ConfigError naming the variable, the entry and the header, never the value."""
    with pytest.raises(ConfigError) as caught:
        config_from_env(
            environ={ENDPOINT_ENV: "http://collector:4318", HEADERS_ENV: f"x-team=shop,x-api-key={encoded}"}
        )
    message = str(caught.value)
    assert message.startswith(f"{HEADERS_ENV} entry 2: the value of x-api-key {problem}")
    assert "SECR" not in message


def test_tabs_and_spaces_inside_a_header_value_are_sent() -> None:
    """Inner spaces and tabs are part of an HTTP field value (`Basic abc`), and are kept."""
    config = config_from_env(environ={HEADERS_ENV: "authorization=Basic%20abc,x-list=a%09b"})
    assert config.forward_headers == (("authorization", "Basic abc"), ("x-list", "a\tb"))


def test_serve_refuses_an_unsendable_header_value_in_one_line(tmp_path: Path) -> None:
    """`flowledger serve` with such a value prints one error line naming the header (not the value) and exits 2."""
    env = subprocess_env(**{ENDPOINT_ENV: "http://127.0.0.1:9", HEADERS_ENV: "x-api-key=SECR%E2%82%ACT42"})
    result = subprocess.run(
        [sys.executable, "-m", "flowledger", "serve", "--db", str(tmp_path / "rx.db"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {HEADERS_ENV} entry 1: the value of x-api-key holds a character beyond Latin-1")
    assert "SECR" not in result.stderr
    assert not (tmp_path / "rx.db").exists()


def test_a_failed_send_is_logged_without_the_exception_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A header set in code that cannot be sent fails the forward, logged by exception type: its value never shows."""
    with upstream_running() as upstream:
        config = ReceiverConfig(
            db_path=tmp_path / "front.db",
            sweep_interval_s=0,
            forward_endpoint=upstream.url,
            forward_headers=(("x-api-key", "SECR€T42"),),
        )
        with caplog.at_level(logging.WARNING, logger="flowledger.receiver"), receiver_running(config) as front:
            assert front.post("/v1/traces", _span_body(), "application/json").status_code == 200
            forwarding = _wait_for_forwarding(front.url)
    assert (forwarding["sent"], forwarding["failed"]) == (0, 1)
    assert upstream.requests == []
    forward_lines = [r.getMessage() for r in caplog.records if "forward" in r.getMessage()]
    assert forward_lines == [f"forwarding to {upstream.url} failed: UnicodeEncodeError"]
    assert "SECR" not in caplog.text


# --- the endpoint ---------------------------------------------------------------------------------------------------


def test_the_signal_path_goes_before_the_endpoints_query(tmp_path: Path) -> None:
    """An endpoint `.../base?token=QT` is posted to `/base/v1/traces?token=QT`, not `/base?token=QT/v1/traces`."""
    with upstream_running() as upstream:
        base = ReceiverConfig(db_path=tmp_path / "front.db", sweep_interval_s=0)
        config = config_from_env(base, environ={ENDPOINT_ENV: f"{upstream.url}/base/?token=QT"})
        with receiver_running(config) as front:
            assert front.post("/v1/traces", _span_body(), "application/json").status_code == 200
            forwarding = _wait_for_forwarding(front.url)
    assert forwarding["sent"] == 1
    assert [path for path, _headers in upstream.requests] == ["/base/v1/traces?token=QT"]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://collector:4318/", "http://collector:4318"),
        ("http://collector:4318/base/?token=a/b", "http://collector:4318/base?token=a/b"),
        ("https://u:p@collector/otlp?token=t", "https://u:p@collector/otlp?token=t"),
    ],
)
def test_an_endpoint_loses_only_its_paths_trailing_slash(given: str, kept: str) -> None:
    """The trailing slash is taken off the URL's path, never off its query (a token may end with one)."""
    assert parse_forward_endpoint(given) == kept


def test_an_at_sign_in_the_query_is_the_querys() -> None:
    """An @ after the path (a query's e-mail address) is no password cut short: the endpoint is taken as given."""
    assert parse_forward_endpoint("http://collector:4318/base?email=ops@example.com") == (
        "http://collector:4318/base?email=ops@example.com"
    )


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ("http://collector:4318/v1/traces?token=SECRET", "='http://collector:4318/v1/traces?token=***' ends with"),
        ("http://:4318/otlp", "='http://:4318/otlp' must be an http:// or https:// base URL"),
        ("http://fwuser:SE?CRET@collector:4318", "holds an @ after where its host seems to end"),
        ("http://fwuser:12/SECRET@collector:4318", "holds an @ after where its host seems to end"),
        ("http://fwuser:SE#CRET@collector:4318", "holds an @ after where its host seems to end"),
        ("http://fwuser:12#SECRET@collector:4318", "holds an @ after where its host seems to end"),
        ("http://SE?CRET@collector:4318", "holds an @ after where its host seems to end"),
    ],
)
def test_an_endpoint_that_is_not_a_base_url_is_refused(given: str, needle: str) -> None:
    """A signal path before a query, no host, a password cut by an unescaped / ? #: ConfigError, no secret shown."""
    with pytest.raises(ConfigError, match=ENDPOINT_ENV) as caught:
        parse_forward_endpoint(given)
    assert needle in str(caught.value)
    assert "SE" not in str(caught.value)


@pytest.mark.parametrize("log_level", ["info", "debug"])
def test_serve_never_logs_the_endpoints_password_or_token(tmp_path: Path, log_level: str) -> None:
    """With `user:password@` and `?token=` in the endpoint, no log line of `flowledger serve` (httpx's and httpcore's
    included, at info and debug) shows either; the upstream still gets both."""
    with upstream_running() as upstream:
        endpoint = upstream.url.replace("http://", "http://fwuser:PASSW0RD@") + "/base?token=QTOKEN"
        with serving(tmp_path, {ENDPOINT_ENV: endpoint}, "--log-level", log_level) as (url, log):
            response = httpx.post(
                f"{url}/v1/traces", content=_span_body(), headers={"content-type": "application/json"}
            )
            assert response.status_code == 200
            forwarding = _wait_for_forwarding(url)
    text = log.read_text(errors="replace")
    assert forwarding["sent"] == 1, text
    ((path, headers),) = upstream.requests
    assert path == "/base/v1/traces?token=QTOKEN"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"fwuser:PASSW0RD").decode()
    assert "PASSW0RD" not in text
    assert "QTOKEN" not in text
