"""http nodes keep their secrets: the URL's password and query values and env header values reach no message or record.

Each test generates a module from a definition and runs it against a real server on 127.0.0.1 (or a closed port).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from flowledger.instrument.delivery._otlp_spans import RunMemo, span_from_event
from flowledger.testing import CapturedEvents
from flowledger.workflow import main
from tests.instrument._fixed_answer import fixed_answer

Build = Callable[..., ModuleType]

PASSWORD = "S3cretPass"
QUERY_TOKEN = "QUERYTOKEN123"
HEADER_SECRET = "SECRETHDR"
SECRETS = (PASSWORD, QUERY_TOKEN, HEADER_SECRET)

DEFINITION = """
flowledger: 1
workflow: {id: hooks}
nodes:
  - id: notify
    http:
      url: "URL"
      headers: HEADERS
"""


def _url(port: int) -> str:
    return f"http://alice:{PASSWORD}@127.0.0.1:{port}/hook?token={QUERY_TOKEN}"


def _shown(port: int) -> str:
    return f"http://***@127.0.0.1:{port}/hook?token=***"


def _run(build: Build, url: str, headers: str = "{X-Hook-Token: {env: HOOK_TOKEN}}") -> int:
    """Build the module for an http node posting to ``url`` with ``headers`` and run it once from its command line."""
    module = build(DEFINITION.replace("URL", url).replace("HEADERS", headers))
    return int(main(module.WORKFLOW, ["--input", '{"order": 1}']))


def _spans(events: CapturedEvents) -> list[dict[str, Any]]:
    """The OTLP spans the SDK exports for the captured events."""
    memo = RunMemo()
    return [span for event in events.all if (span := span_from_event(event, memo)) is not None]


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def _attempt(events: CapturedEvents) -> dict[str, Any]:
    (finished,) = [e["data"] for e in events.all if e["kind"] == "node_finished" and e["data"]["node_id"] == "notify"]
    return dict(finished)


def test_an_error_answer_shows_and_records_the_url_masked_and_sends_the_real_one(
    build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 to a URL with a password and ?token=: the request uses them; message, record and spans mask them."""
    monkeypatch.setenv("HOOK_TOKEN", f"Bearer {HEADER_SECRET}")
    with fixed_answer(500) as server:
        assert _run(build, _url(server.port)) == 1
        (seen,) = server.seen
    assert seen.target == f"/hook?token={QUERY_TOKEN}"
    assert seen.authorization == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    attempt = _attempt(events)
    expected = f"POST {_shown(server.port)} answered 500 Internal Server Error: "
    assert attempt["error"]["message"].startswith(expected)
    assert attempt["attributes"]["url.full"] == _shown(server.port)
    err = capsys.readouterr().err
    assert expected in err
    _assert_no_secret(err, json.dumps(events.all), json.dumps(_spans(events)))


def test_the_recorded_node_spec_shows_the_url_masked(
    build: Build, events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt's flowledger.http attribute (its node spec) names the method and the masked URL."""
    monkeypatch.setenv("HOOK_TOKEN", "Bearer x")
    with fixed_answer(200) as server:
        assert _run(build, _url(server.port)) == 0
    assert _attempt(events)["attributes"]["flowledger.http"] == f"POST {_shown(server.port)}"
    _assert_no_secret(json.dumps(events.all))


def test_a_refused_connection_names_the_url_masked(
    build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listening: the node fails with httpx.ConnectError naming the masked URL and the system's reason."""
    monkeypatch.setenv("HOOK_TOKEN", "Bearer x")
    with fixed_answer(200) as server:
        port = server.port
    assert _run(build, _url(port)) == 1
    error = _attempt(events)["error"]
    assert error["type"] == "httpx.ConnectError"
    assert error["message"].startswith(f"POST {_shown(port)} failed on the network ([Errno ")
    assert error["message"].endswith("): check that the server is up and reachable")
    _assert_no_secret(capsys.readouterr().err, json.dumps(events.all), json.dumps(_spans(events)))


def test_a_url_httpx_refuses_is_named_masked(
    build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL the definition accepts but httpx cannot use fails with httpx.InvalidURL naming it masked."""
    monkeypatch.setenv("HOOK_TOKEN", "Bearer x")
    url = f"http://alice:{PASSWORD}@256.0.0.1:8080/hook?token={QUERY_TOKEN}"  # not an IPv4 address
    assert _run(build, url) == 1
    error = _attempt(events)["error"]
    assert error["type"] == "httpx.InvalidURL"
    assert error["message"] == (
        "POST http://***@256.0.0.1:8080/hook?token=*** cannot be sent to this URL: "
        "write an http:// or https:// URL with a valid host and port"
    )
    _assert_no_secret(capsys.readouterr().err, json.dumps(events.all))


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (f"Bearer {HEADER_SECRET}\n", "a line break at character 17 of 17"),
        (f"Bearer {HEADER_SECRET}\r\nX-Injected: 1", "a carriage return at character 17 of 31"),
        (f"Bearer\x7f{HEADER_SECRET}", "the character U+007F at character 7 of 16"),
        (f"Bearer {HEADER_SECRET}é", "the character U+00E9 at character 17 of 17"),
        (f" Bearer {HEADER_SECRET}", "a space at character 1 of 17"),
    ],
)
def test_an_env_header_value_http_cannot_carry_is_refused_before_sending(
    value: str,
    said: str,
    build: Build,
    events: CapturedEvents,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An {env: NAME} header with a line break or control character fails naming header and variable, not value."""
    monkeypatch.setenv("HOOK_TOKEN", value)
    with fixed_answer(200) as server:
        assert _run(build, f"http://127.0.0.1:{server.port}/hook", "{Authorization: {env: HOOK_TOKEN}}") == 1
        assert server.seen == []
    error = _attempt(events)["error"]
    assert error["type"] == "flowledger.ConfigError"
    assert error["message"] == (
        f"environment variable HOOK_TOKEN holds {said}; node `notify` sends it as header Authorization, whose "
        "value must be visible ASCII with spaces or tabs only between characters: set the variable without it"
    )
    _assert_no_secret(capsys.readouterr().err, json.dumps(events.all), json.dumps(_spans(events)))
