"""Settings: environment variables, configure(), and bad values."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import flowledger
from flowledger.instrument._config import DEFAULT_ENDPOINT, Settings, _forget_reports, settings_from_env


def test_defaults_match_the_contract() -> None:
    """Without variables: endpoint 127.0.0.1:4318, capture on, 4 KiB limit, exit flush under a second."""
    settings = settings_from_env({})
    assert settings.endpoint == DEFAULT_ENDPOINT == "http://127.0.0.1:4318"
    assert settings.events_url == "http://127.0.0.1:4318/v1/events"
    assert settings.traces_url == "http://127.0.0.1:4318/v1/traces"
    assert settings.capture_limit_bytes == 4096
    assert settings.exit_flush_s < 1.0
    assert not settings.disabled


def test_environment_variables_set_each_setting(tmp_path: Path) -> None:
    """FLOWLEDGER_* variables set the endpoint, spool dir, disabled flag, limits and patterns."""
    settings = settings_from_env(
        {
            "FLOWLEDGER_ENDPOINT": "http://10.1.2.3:9999/",
            "FLOWLEDGER_DISABLED": "1",
            "FLOWLEDGER_SPOOL_DIR": str(tmp_path),
            "FLOWLEDGER_CAPTURE_LIMIT_BYTES": "100",
            "FLOWLEDGER_REDACT_PATTERNS": "ssn, pin",
            "FLOWLEDGER_EXIT_FLUSH_S": "0.1",
        }
    )
    assert settings.events_url == "http://10.1.2.3:9999/v1/events"
    assert settings.disabled
    assert settings.spool_dir == tmp_path
    assert settings.capture_limit_bytes == 100
    assert settings.redact_patterns == ("ssn", "pin")
    assert settings.exit_flush_s == 0.1


def test_otel_endpoint_variables_route_spans() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT sends spans to <endpoint>/v1/traces; the traces variable wins."""
    assert settings_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}).traces_url == "http://c:4318/v1/traces"
    both = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x"}
    assert settings_from_env(both).traces_url == "http://t/x"
    headers = settings_from_env({"OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2"}).otlp_headers
    assert headers == (("a", "1"), ("b", "2"))


def test_bad_environment_values_are_reported_once_and_replaced(caplog: pytest.LogCaptureFixture) -> None:
    """A bad variable logs one warning naming it and what it accepts, and the default is used."""
    _forget_reports()
    env = {"FLOWLEDGER_QUEUE_MAX_ITEMS": "lots", "FLOWLEDGER_ENDPOINT": "not a url"}
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        first = settings_from_env(env)
        settings_from_env(env)
    assert first.queue_max_items == Settings().queue_max_items
    assert first.endpoint == DEFAULT_ENDPOINT
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert any("FLOWLEDGER_QUEUE_MAX_ITEMS" in m and "positive integer" in m for m in messages)


def test_configure_rejects_unknown_settings_and_bad_values() -> None:
    """configure() raises ConfigError naming an unknown setting or an unusable value."""
    with pytest.raises(flowledger.ConfigError, match="no setting 'endpont'"):
        flowledger.configure(endpont="http://x")
    with pytest.raises(flowledger.ConfigError, match="queue_max_items must be a positive integer"):
        flowledger.configure(queue_max_items=0)
