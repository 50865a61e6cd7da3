"""Endpoint URLs: requests go below the endpoint's path with its query kept; messages never show its secrets."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowledger._exceptions import ConfigError
from flowledger._url import join_path, masked
from flowledger.instrument._config import Settings, _forget_reports, settings_from_env
from tests.instrument._fixed_answer import fixed_answer
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env, closed_port_url

SECRETS = ("pw123", "qsecret", "otelpw", "otelq")

CHILD = """
import flowledger
with flowledger.run("masked"):
    pass
flowledger.flush(timeout_s=10.0)
"""


def _run_child(tmp_path: Path, **env: str) -> str:
    """Run one recorded run in a real process with ``env``; return what it wrote to stderr."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=REPO_ROOT,
        env=child_env(
            FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
            FLOWLEDGER_EXPORT_SPANS="1",
            FLOWLEDGER_MAX_RETRIES="0",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert not any(secret in done.stdout for secret in SECRETS)
    return done.stderr


def test_an_answering_endpoint_gets_the_path_before_its_query_and_is_named_masked(tmp_path: Path) -> None:
    """Events and spans go to /base/v1/... with ?token= after the path and Basic auth; the 401 warnings mask both."""
    with fixed_answer(401) as server:
        stderr = _run_child(
            tmp_path, FLOWLEDGER_ENDPOINT=f"http://user:pw123@127.0.0.1:{server.port}/base/?token=qsecret"
        )
        seen = server.seen
    base = f"http://***@127.0.0.1:{server.port}/base"
    assert f"flowledger: {base}/v1/events?token=*** answered 401" in stderr
    assert f"flowledger: the traces endpoint {base}/v1/traces?token=*** answered 401" in stderr
    assert not any(secret in stderr for secret in SECRETS), stderr
    assert {s.target for s in seen} == {"/base/v1/events?token=qsecret", "/base/v1/traces?token=qsecret"}
    assert {s.authorization for s in seen} == {"Basic " + base64.b64encode(b"user:pw123").decode()}


def test_unreachable_endpoints_are_named_without_userinfo_or_query(tmp_path: Path) -> None:
    """`cannot reach` (events) and `could not export spans to` (an OTLP endpoint) show both URLs masked."""
    receiver = closed_port_url().replace("http://", "http://user:pw123@") + "/?token=qsecret"
    collector = closed_port_url().replace("http://", "http://u:otelpw@") + "?token=otelq"
    stderr = _run_child(tmp_path, FLOWLEDGER_ENDPOINT=receiver, OTEL_EXPORTER_OTLP_ENDPOINT=collector)
    assert f"flowledger: cannot reach {masked(receiver).replace('/?', '/v1/events?')}: " in stderr
    assert f"flowledger: could not export spans to {masked(collector).replace('?', '/v1/traces?')}: " in stderr
    assert "http://***@127.0.0.1:" in stderr
    assert not any(secret in stderr for secret in SECRETS), stderr


def test_an_otlp_sink_names_its_unreachable_endpoint_masked(tmp_path: Path) -> None:
    """FLOWLEDGER_SINKS=otlp: the OTLP sink's `cannot reach` warning shows the traces URL masked."""
    collector = closed_port_url().replace("http://", "http://u:otelpw@") + "/?token=otelq"
    stderr = _run_child(tmp_path, FLOWLEDGER_SINKS="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=collector)
    assert f"flowledger: cannot reach {masked(collector).replace('/?', '/v1/traces?')}: " in stderr
    assert not any(secret in stderr for secret in SECRETS), stderr


def test_a_grpc_collector_gets_no_userinfo_and_is_named_masked(tmp_path: Path) -> None:
    """OTLP over gRPC: neither the OTel exporter's own log nor the SDK's warning shows the endpoint's secrets."""
    collector = closed_port_url().replace("http://", "http://u:otelpw@") + "?token=otelq"
    stderr = _run_child(
        tmp_path,
        FLOWLEDGER_ENDPOINT=closed_port_url(),
        FLOWLEDGER_REQUEST_TIMEOUT_S="1",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector,
    )
    assert "flowledger: could not export spans over gRPC to http://127.0.0.1:" in stderr
    assert not any(secret in stderr for secret in SECRETS), stderr


@pytest.mark.parametrize("variable", ["FLOWLEDGER_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_a_bad_endpoint_variable_is_reported_masked(variable: str, caplog: pytest.LogCaptureFixture) -> None:
    """An endpoint variable that is not a URL is reported naming it, with its userinfo and query masked."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings_from_env({variable: "http://user:pw123@ bad host/?token=qsecret"})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert variable in messages[0]
    assert "http://***@ bad host/" in messages[0]
    assert not any(secret in messages[0] for secret in SECRETS)


def test_configure_with_a_bad_endpoint_does_not_echo_its_password(configure: Callable[..., Any]) -> None:
    """configure(endpoint=...) refuses a non-http URL in an error that shows it masked."""
    with pytest.raises(ConfigError) as caught:
        configure(endpoint="ftp://user:pw123@host/?token=qsecret")
    assert "'ftp://***@host/?token=***'" in str(caught.value)
    assert not any(secret in str(caught.value) for secret in SECRETS)


@pytest.mark.parametrize(
    ("endpoint", "events_url"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/events"),
        ("http://h:1/", "http://h:1/v1/events"),
        ("http://h:1/base/?token=t&x=1", "http://h:1/base/v1/events?token=t&x=1"),
        ("http://h:1?token=t#frag", "http://h:1/v1/events?token=t"),
    ],
)
def test_the_events_path_joins_the_endpoint_path_and_keeps_its_query(endpoint: str, events_url: str) -> None:
    """/v1/events goes after the endpoint's path and before its query; a fragment (never sent) is dropped."""
    assert Settings(endpoint=endpoint).events_url == events_url
    assert join_path(endpoint, "v1/events") == events_url
    general = settings_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}).traces_url
    assert general == events_url.replace("/v1/events", "/v1/traces")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318"),
        ("https://[::1]:4318/base", "https://[::1]:4318/base"),
        ("http://user:pw@h:1/p?token=t&bare#frag", "http://***@h:1/p?token=***&***"),
        ("http://token@h", "http://***@h"),
        ("user:pw@host", "***@host"),
        ("http://user:p/w@host/base", "http://***"),
        ("http://user:p?w@host", "http://***"),
        ("http://user:p#w@host", "http://***"),
        ("not a url", "not a url"),
    ],
)
def test_masked_hides_userinfo_and_query_values_even_in_a_malformed_url(url: str, shown: str) -> None:
    """Userinfo and query values become ***; a password with / ? or # that ends the host early is hidden too."""
    assert masked(url) == shown


def test_settings_shown_with_repr_hold_no_credentials() -> None:
    """A logged ``Settings`` (``repr``) shows its endpoints masked, as every message does, and no key or header."""
    settings = Settings(
        endpoint="http://user:pw123@127.0.0.1:1/base?token=qsecret",
        otlp_traces_endpoint="http://u:otelpw@collector:4318/v1/traces",
        api_key="sekr3tKey",
        otlp_headers=(("authorization", "Bearer hdrsecret"),),
    )
    shown = repr(settings)
    for secret in ("pw123", "qsecret", "otelpw", "sekr3tKey", "hdrsecret"):
        assert secret not in shown
    assert "endpoint='http://***@127.0.0.1:1/base?token=***'" in shown
    assert "otlp_traces_endpoint='http://***@collector:4318/v1/traces'" in shown


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pa/ss@host:1",
        "http://tok#secret@host:1",
        "http://tok?secret@host:1",
        "http://user:12#secret@host:1/p",
    ],
)
def test_a_password_cut_short_by_an_unescaped_character_is_refused_and_hidden(url: str) -> None:
    """An @ after where the host seems to end is a secret holding / ? or #: the endpoint is refused (the request
    would go to the start of the secret as a host) and shown as nothing but its scheme."""
    from flowledger._url import url_problem, userinfo_cut_short

    assert userinfo_cut_short(url)
    assert url_problem(url) is not None
    assert masked(url) == "http://***"


@pytest.mark.parametrize(
    "url", ["http://user:pw@host:1/p?email=ops@example.com", "http://host:1/p?e=a@b", "http://u:p@h:1/#x"]
)
def test_an_at_sign_of_the_query_or_the_userinfo_is_the_urls_own(url: str) -> None:
    """An @ ending the userinfo, or in a query after an "=", cuts nothing short."""
    from flowledger._url import url_problem, userinfo_cut_short

    assert not userinfo_cut_short(url)
    assert url_problem(url) is None
