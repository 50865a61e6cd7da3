"""The standard OTel SDK variables applied to the SDK's own spans: resource, kill switch, sampler (real receivers)."""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowledger
from flowledger.instrument._config import Settings, _forget_reports, settings_from_env
from flowledger.instrument._otel_env import TracesSampler
from flowledger.receiver._config import ReceiverConfig
from tests.otel._processes import generate_module, serving
from tests.otel._support import LiveReceiver, free_port, receiver_running, subprocess_env

LOW_TRACE = "0af7651916cd43dd8448eb211c80319c"[:16] + "0000000000000001"
"""A trace id whose low 64 bits are tiny: a ratio sampler at 0.5 keeps it."""
HIGH_TRACE = "0af7651916cd43dd8448eb211c80319c"[:16] + "fffffffffffffffe"
"""A trace id whose low 64 bits are near the top: a ratio sampler at 0.5 leaves it out."""
LOW_SKIPPED = f"{LOW_TRACE}-00"
"""The low trace, continued from a caller that did not sample it (traceparent flags 00)."""
HIGH_SKIPPED = f"{HIGH_TRACE}-00"
"""The high trace, continued from a caller that did not sample it."""
CALLER_SPAN = "b7ad6b7169203331"

APP = """
import sys

import flowledger


@flowledger.node
def fetch(order):
    return order["id"]


ids = []
for parent in sys.argv[1:] or ["root"]:  # a trace id, with -00 when the caller did not sample it; root: none
    trace_id, _, flags = parent.partition("-")
    traceparent = None if parent == "root" else f"00-{trace_id}-b7ad6b7169203331-{flags or '01'}"
    with flowledger.run("order-intake", traceparent=traceparent) as run:
        fetch({"id": 1})
    ids += [run.run_id, run.trace_id]
print(*ids)
sys.exit(0 if flowledger.flush(timeout_s=10.0) else 3)
"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver serving OTLP/HTTP and OTLP/gRPC."""
    config = ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0, grpc_port=free_port())
    with receiver_running(config) as receiver:
        yield receiver


def _run_app(tmp_path: Path, *trace_ids: str, **env: str) -> list[str]:
    """Run APP in a child process (one run per trace id given, ``-00`` after one its caller did not sample, ``root``
    for a run without a caller; else one new trace); its run and trace ids."""
    script = tmp_path / "otel_env_app.py"
    script.write_text(textwrap.dedent(APP), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), *trace_ids],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _spans_accepted(receiver: LiveReceiver) -> int:
    return int(receiver.get("/api/otlp/stats").json()["spans"]["accepted"])


@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf", "grpc"])
def test_resource_attributes_join_the_resource_of_every_exported_span(
    live: LiveReceiver, tmp_path: Path, protocol: str
) -> None:
    """OTEL_RESOURCE_ATTRIBUTES (percent-decoded) is in every span's resource; OTEL_SERVICE_NAME wins service.name."""
    endpoint = f"http://127.0.0.1:{live.config.grpc_port}" if protocol == "grpc" else live.url
    _run_id, trace_id = _run_app(
        tmp_path,
        FLOWLEDGER_ENDPOINT=live.url,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_SERVICE_NAME="order-intake",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=prod, team=a%2Cb%3Dc ,service.name=ignored,k%20x=caf%C3%A9",
    )
    doc = live.wait_for(f"/api/traces/{trace_id}", lambda d: d["span_count"] == 2)
    for span in doc["spans"]:
        resource = span["resource"]
        assert resource["deployment.environment"] == "prod"
        assert resource["team"] == "a,b=c"
        assert resource["k x"] == "café"
        assert resource["service.name"] == span["service_name"] == "order-intake"
        assert resource["telemetry.sdk.name"] == "flowledger"


def test_a_service_name_in_resource_attributes_names_the_service_without_otel_service_name() -> None:
    """Without FLOWLEDGER_SERVICE_NAME or OTEL_SERVICE_NAME, service.name of OTEL_RESOURCE_ATTRIBUTES is the service."""
    settings = settings_from_env({"OTEL_RESOURCE_ATTRIBUTES": "service.name=billing,region=eu"})
    assert settings.service_name == "billing"
    assert settings.resource_attributes == (("region", "eu"),)
    both = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=billing", "OTEL_SERVICE_NAME": "orders"}
    assert settings_from_env(both).service_name == "orders"


def test_otel_sdk_disabled_turns_span_export_off_but_not_the_runs(receiver: LiveReceiver, tmp_path: Path) -> None:
    """OTEL_SDK_DISABLED=true: the run is recorded, no span is exported; without it, its two spans are."""
    run_id, trace_id = _run_app(tmp_path, FLOWLEDGER_ENDPOINT=receiver.url, OTEL_SDK_DISABLED="True")
    assert receiver.get(f"/api/runs/{run_id}").json()["status"] == "succeeded"
    assert receiver.trace(trace_id)["span_count"] == 0
    assert _spans_accepted(receiver) == 0
    _run_id, other_trace = _run_app(tmp_path, FLOWLEDGER_ENDPOINT=receiver.url)
    receiver.wait_for(f"/api/traces/{other_trace}", lambda d: d["span_count"] == 2)


@pytest.mark.parametrize(
    ("sampler", "parents", "kept"),
    [
        ({"OTEL_TRACES_SAMPLER": "always_off"}, [LOW_TRACE, HIGH_TRACE], [False, False]),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
            [LOW_SKIPPED, HIGH_TRACE],
            [True, False],
        ),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, ["root", HIGH_TRACE], [False, True]),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, [LOW_TRACE, HIGH_SKIPPED], [True, False]),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, [LOW_SKIPPED, "root"], [False, True]),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, [LOW_SKIPPED, HIGH_TRACE], [False, True]),
        (
            {"OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio", "OTEL_TRACES_SAMPLER_ARG": " 0.5 "},
            [LOW_TRACE, HIGH_TRACE],
            [True, True],
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"},
            [LOW_SKIPPED, HIGH_TRACE],
            [False, True],
        ),
    ],
)
def test_the_traces_sampler_chooses_the_traces_whose_spans_are_exported(
    receiver: LiveReceiver, tmp_path: Path, sampler: dict[str, str], parents: list[str], kept: list[bool]
) -> None:
    """OTEL_TRACES_SAMPLER applies to the SDK's spans as OTel's samplers decide (parent-based ones following the
    caller's sampled flag, the root sampler without a caller); runs are all recorded."""
    ids = _run_app(tmp_path, *parents, FLOWLEDGER_ENDPOINT=receiver.url, **sampler)
    runs = list(zip(ids[0::2], ids[1::2], kept, strict=True))
    for _run_id, trace_id, exported in runs:
        if exported:
            receiver.wait_for(f"/api/traces/{trace_id}", lambda d: d["span_count"] == 2)
    for run_id, trace_id, exported in runs:
        assert receiver.get(f"/api/runs/{run_id}").json()["status"] == "succeeded"
        assert receiver.trace(trace_id)["span_count"] == (2 if exported else 0)
    assert _spans_accepted(receiver) == 2 * sum(kept)


CALLEE = """
flowledger: 1
workflow: {id: callee, name: Callee}
trigger: {type: http, http: {path: /callee}}
nodes:
  - id: echo
    call: tests.otel.steps:echo
"""


@pytest.mark.parametrize(
    ("sampler", "exported"),
    [("parentbased_always_on", {"00": False, "01": True}), ("parentbased_always_off", {"00": False, "01": True})],
)
def test_an_http_triggered_run_follows_the_callers_sampled_flag(
    receiver: LiveReceiver, tmp_path: Path, sampler: str, exported: dict[str, bool]
) -> None:
    """A parent-based sampler exports an http-triggered run's spans when its caller's traceparent says sampled."""
    callee = generate_module(tmp_path, "callee", CALLEE)
    traces = {flags: secrets.token_hex(16) for flags in ("00", "01")}
    runs: dict[str, str] = {}
    env = {"FLOWLEDGER_ENDPOINT": receiver.url, "OTEL_TRACES_SAMPLER": sampler}
    with serving(callee, tmp_path / "callee.log", **env) as url:
        for flags, trace_id in traces.items():  # the unsampled caller first: its spans would go out first
            headers = {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-{flags}"}
            answer = httpx.post(f"{url}/callee", json={"x": 1}, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
            runs[flags] = answer.headers["x-flowledger-run-id"]
        receiver.wait_for(f"/api/traces/{traces['01']}", lambda d: d["span_count"] == 2)
    for flags, trace_id in traces.items():
        run = receiver.wait_for(f"/api/runs/{runs[flags]}", lambda d: d["status"] == "succeeded")
        assert run["trace_id"] == trace_id
        assert receiver.trace(trace_id)["span_count"] == (2 if exported[flags] else 0)
    assert _spans_accepted(receiver) == 2


@pytest.mark.parametrize(
    ("variable", "value", "extra"),
    [
        ("OTEL_RESOURCE_ATTRIBUTES", "region=eu,no-equals-sign", {}),
        ("OTEL_RESOURCE_ATTRIBUTES", "region=%zz", {}),
        ("OTEL_RESOURCE_ATTRIBUTES", "=eu", {}),
        ("OTEL_SDK_DISABLED", "maybe", {}),
        ("OTEL_TRACES_SAMPLER", "sometimes", {}),
        ("OTEL_TRACES_SAMPLER", "jaeger_remote", {}),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5", {"OTEL_TRACES_SAMPLER": "traceidratio"}),
        ("OTEL_TRACES_SAMPLER_ARG", "half", {"OTEL_TRACES_SAMPLER": "traceidratio"}),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift", {}),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/xml", {}),
    ],
)
def test_a_malformed_otel_variable_is_one_warning_naming_it(
    caplog: pytest.LogCaptureFixture, variable: str, value: str, extra: dict[str, str]
) -> None:
    """A malformed OTel variable never raises: one warning names it, and its default applies."""
    _forget_reports()
    env = {variable: value, **extra}
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env(env)
        settings_from_env(env)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"ignoring {variable}=" in warnings[0]
    defaults = Settings()
    assert settings.resource_attributes == defaults.resource_attributes
    assert settings.export_spans is defaults.export_spans
    assert settings.traces_sampler_ratio == defaults.traces_sampler_ratio
    if variable == "OTEL_TRACES_SAMPLER":
        assert settings.traces_sampler is defaults.traces_sampler


def test_configure_takes_the_sampler_and_resource_attributes_and_checks_them() -> None:
    """configure()'s traces_sampler, its ratio and resource_attributes: used when good, ConfigError when not."""
    settings = Settings().updated(
        traces_sampler="TraceIdRatio", traces_sampler_ratio=0.25, resource_attributes={"region": "eu"}
    )
    assert (settings.traces_sampler, settings.traces_sampler_ratio) == (TracesSampler.TRACEIDRATIO, 0.25)
    assert settings.resource_attributes == (("region", "eu"),)
    as_text = Settings().updated(resource_attributes="region=eu,team=a%2Cb")  # as the variable takes it
    assert as_text.resource_attributes == (("region", "eu"), ("team", "a,b"))
    bad: list[dict[str, Any]] = [
        {"traces_sampler": "sometimes"},
        {"traces_sampler_ratio": 1.5},
        {"traces_sampler_ratio": True},
        {"resource_attributes": {"region": 1}},
        {"resource_attributes": "region"},
        {"resource_attributes": 5},
    ]
    for change in bad:
        with pytest.raises(flowledger.ConfigError, match=next(iter(change))):
            Settings().updated(**change)


def test_a_bad_traces_endpoint_warning_names_the_general_endpoint_used_instead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bad OTEL_EXPORTER_OTLP_TRACES_ENDPOINT beside a good OTEL_EXPORTER_OTLP_ENDPOINT: the warning names that."""
    _forget_reports()
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:99999",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
    }
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env(env)
    assert settings.traces_url == "http://c:4318/v1/traces"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("flowledger: ignoring OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='http://collector:99999'")
    assert warning.endswith("; using OTEL_EXPORTER_OTLP_ENDPOINT.")
    assert "the default" not in warning
