"""The standard OTel SDK variables applied to the SDK's own spans: resource, kill switch, sampler (real receivers)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger.instrument._config import Settings, _forget_reports, settings_from_env
from flowledger.instrument._otel_env import TracesSampler
from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import LiveReceiver, free_port, receiver_running, subprocess_env

LOW_TRACE = "0af7651916cd43dd8448eb211c80319c"[:16] + "0000000000000001"
"""A trace id whose low 64 bits are tiny: a ratio sampler at 0.5 keeps it."""
HIGH_TRACE = "0af7651916cd43dd8448eb211c80319c"[:16] + "fffffffffffffffe"
"""A trace id whose low 64 bits are near the top: a ratio sampler at 0.5 leaves it out."""
CALLER_SPAN = "b7ad6b7169203331"

APP = """
import sys

import flowledger


@flowledger.node
def fetch(order):
    return order["id"]


ids = []
for trace_id in sys.argv[1:] or [None]:
    traceparent = None if trace_id is None else f"00-{trace_id}-b7ad6b7169203331-01"
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
    """Run APP in a child process (one run per trace id given, else one new trace); its run and trace ids."""
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
    ("sampler", "kept"),
    [
        ({"OTEL_TRACES_SAMPLER": "always_off"}, []),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, []),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, [LOW_TRACE]),
        ({"OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio", "OTEL_TRACES_SAMPLER_ARG": " 0.5 "}, [LOW_TRACE]),
    ],
)
def test_the_traces_sampler_chooses_the_traces_whose_spans_are_exported(
    receiver: LiveReceiver, tmp_path: Path, sampler: dict[str, str], kept: list[str]
) -> None:
    """OTEL_TRACES_SAMPLER applies to the SDK's spans, by trace id as OTel's samplers decide; runs are all recorded."""
    ids = _run_app(tmp_path, LOW_TRACE, HIGH_TRACE, FLOWLEDGER_ENDPOINT=receiver.url, **sampler)
    runs = dict(zip(ids[1::2], ids[0::2], strict=True))
    for trace_id in kept:
        receiver.wait_for(f"/api/traces/{trace_id}", lambda d: d["span_count"] == 2)
    for trace_id, run_id in runs.items():
        assert receiver.get(f"/api/runs/{run_id}").json()["status"] == "succeeded"
        assert receiver.trace(trace_id)["span_count"] == (2 if trace_id in kept else 0)
    assert _spans_accepted(receiver) == 2 * len(kept)


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
