"""Settings: environment variables, configure(), and bad values."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import flowledger
from flowledger.instrument._config import DEFAULT_ENDPOINT, Settings, _forget_reports, settings_from_env
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env, recorder


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


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_spool_dir_is_reported_not_taken_for_the_working_directory(
    blank: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Path("") is "."; a blank FLOWLEDGER_SPOOL_DIR must not spool into wherever the process happens to run."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({"FLOWLEDGER_SPOOL_DIR": blank})
    assert settings.spool_dir == Settings().spool_dir
    assert settings.spool_dir.is_absolute()
    assert any("FLOWLEDGER_SPOOL_DIR" in r.getMessage() for r in caplog.records)


def test_configure_rejects_unknown_settings_and_bad_values() -> None:
    """configure() raises ConfigError naming an unknown setting or an unusable value."""
    with pytest.raises(flowledger.ConfigError, match="no setting 'endpont'"):
        flowledger.configure(endpont="http://x")
    with pytest.raises(flowledger.ConfigError, match="queue_max_items must be a positive integer"):
        flowledger.configure(queue_max_items=0)


SECRET = "sekrit-7f3a"
BAD_KEYS = [SECRET + "\n", SECRET + "\r\nX-Injected: 1", "\t" + SECRET, SECRET + " tail", SECRET + "\x7f", SECRET + "é"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_configure_rejects_an_unusable_api_key_without_echoing_it(key: str) -> None:
    """configure(api_key=...) with a newline, control character, space or non-ASCII: ConfigError, key not shown."""
    with pytest.raises(flowledger.ConfigError) as caught:
        flowledger.configure(api_key=key)
    assert "api_key" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_an_unusable_api_key_in_the_environment_is_reported_once_without_echoing_it(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """FLOWLEDGER_API_KEY with a control character is ignored with one warning that names the variable, not the key."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        first = settings_from_env({"FLOWLEDGER_API_KEY": key})
        settings_from_env({"FLOWLEDGER_API_KEY": key})
    assert first.api_key is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "FLOWLEDGER_API_KEY" in messages[0]
    assert SECRET not in messages[0]


def test_secrets_stay_out_of_the_settings_repr_and_bad_otlp_header_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """A usable key is kept but not shown by repr(); a bad OTLP headers variable is reported without its value."""
    settings = Settings(api_key=SECRET, otlp_headers=(("Authorization", SECRET),))
    assert Settings().updated(api_key=SECRET).api_key == SECRET
    assert SECRET not in repr(settings)
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings_from_env({"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization{SECRET}"})
    assert [r for r in caplog.records if "OTEL_EXPORTER_OTLP_HEADERS" in r.getMessage()]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


API_KEY_CHILD = """
import json, flowledger
with flowledger.run("keyed"):
    pass
ok = flowledger.flush(timeout_s=20.0)
print(json.dumps({"ok": ok, **flowledger.stats()}))
"""


def test_a_process_with_an_unusable_api_key_delivers_without_it_and_never_prints_it(tmp_path: Path) -> None:
    """A real process with FLOWLEDGER_API_KEY='key\\n' warns once without the key and still delivers its events."""
    with recorder() as rec:
        done = subprocess.run(
            [sys.executable, "-c", API_KEY_CHILD],
            cwd=REPO_ROOT,
            env=child_env(
                FLOWLEDGER_ENDPOINT=rec.url,
                FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
                FLOWLEDGER_API_KEY=SECRET + "\n",
                FLOWLEDGER_EXPORT_SPANS="1",
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] is True
        assert rec.wait_for(2)
        assert rec.headers_seen
        assert all("authorization" not in h for h in rec.headers_seen)
    assert SECRET not in done.stdout + done.stderr
    assert done.stderr.count("FLOWLEDGER_API_KEY") == 1


@pytest.mark.parametrize(
    ("variable", "value", "accepts", "default"),
    [
        ("FLOWLEDGER_EXIT_FLUSH_S", "1e10", "from 0 to 3600", "0.3 s"),
        ("FLOWLEDGER_BATCH_MAX_AGE_S", "1e300", "more than 0 and at most 3600", "0.2 s"),
        ("FLOWLEDGER_REQUEST_TIMEOUT_S", "1e300", "more than 0 and at most 3600", "2 s"),
        ("FLOWLEDGER_HEARTBEAT_INTERVAL_S", "1e300", "more than 0 and at most 86400", "15 s"),
        ("FLOWLEDGER_NODE_START_DELAY_S", "nan", "from 0 to 86400", "0.2 s"),
        ("FLOWLEDGER_SAMPLE_SLOW_S", "inf", "more than 0 and at most 31536000", "10 s"),
    ],
)
def test_a_duration_out_of_its_range_is_reported_with_the_range_and_the_default(
    variable: str, value: str, accepts: str, default: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A duration variable past its range warns, naming it, the range and the default used; the default applies."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({variable: value})
    name = variable.removeprefix("FLOWLEDGER_").lower()
    assert getattr(settings, name) == getattr(Settings(), name)
    assert f"{variable}={value!r}" in caplog.text
    assert accepts in caplog.text
    assert f"the default, {default}" in caplog.text


def test_configure_refuses_a_duration_out_of_its_range() -> None:
    """configure(exit_flush_s=1e10) raises ConfigError stating the range, as configure does for any bad value."""
    with pytest.raises(flowledger.ConfigError, match="exit_flush_s must be a number of seconds from 0 to 3600"):
        Settings().updated(exit_flush_s=1e10)
    with pytest.raises(flowledger.ConfigError, match="heartbeat_interval_s"):
        Settings().updated(heartbeat_interval_s=float("inf"))


@pytest.mark.parametrize(
    ("value", "shown", "problem"),
    [
        ("http://u:pw@127.0.0.1:99999", "'http://***@127.0.0.1:99999'", "port is a number from 1 to 65535"),
        ("http://127.0.0.1:0/?token=t", "'http://127.0.0.1:0/?token=***'", "port is a number from 1 to 65535"),
        ("http://[::1", "'http://***'", "brackets closed around an IPv6 address"),
        ("http://[::1]x:80/", "'http://[::1]x:80/'", "a well-formed host"),
        ("http://:80/", "'http://:80/'", "with a host"),
    ],
)
def test_an_unusable_endpoint_is_reported_naming_the_variable_masked(
    value: str, shown: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    """FLOWLEDGER_ENDPOINT is read as the sender reads it: a bad port or host warns, masked; the default applies."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({"FLOWLEDGER_ENDPOINT": value})
    assert settings.endpoint == DEFAULT_ENDPOINT
    assert f"FLOWLEDGER_ENDPOINT={shown}" in caplog.text
    assert problem in caplog.text
    assert "pw" not in caplog.text
    assert "token=t" not in caplog.text
    with pytest.raises(flowledger.ConfigError, match=problem.split(" (")[0][:20]):
        Settings().updated(endpoint=value)


def test_a_bad_otel_traces_variable_is_reported_under_its_own_name_as_given(caplog: pytest.LogCaptureFixture) -> None:
    """A bad OTEL_EXPORTER_OTLP_TRACES_* is named as such, its value as given (masked, no /v1/traces appended)."""
    _forget_reports()
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://u:pw@collector:99999/x?key=s",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "no-equals-sign",
    }
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env(env)
    assert settings.otlp_traces_endpoint is None
    assert settings.otlp_headers == ()
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='http://***@collector:99999/x?key=***'" in caplog.text
    assert "OTEL_EXPORTER_OTLP_TRACES_HEADERS (value not shown)" in caplog.text
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in caplog.text
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in caplog.text
    assert "/v1/traces" not in caplog.text
    assert "pw" not in caplog.text
    assert "no-equals" not in caplog.text


@pytest.mark.parametrize("blank", ["", "  ", " , ", ","])
def test_a_blank_redact_patterns_variable_keeps_redaction_and_warns(
    blank: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A blank FLOWLEDGER_REDACT_PATTERNS is reported and the default patterns apply: it never turns redaction off."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({"FLOWLEDGER_REDACT_PATTERNS": blank})
    assert settings.redact_patterns == Settings().redact_patterns
    assert f"FLOWLEDGER_REDACT_PATTERNS={blank!r}" in caplog.text


BLANK_PATTERNS_CHILD = """
import flowledger
@flowledger.node
def login(credentials):
    return "ok"
with flowledger.run("blank-patterns"):
    login({"user": "ann", "password": "hunter2"})
assert flowledger.flush(timeout_s=20.0)
"""


def test_a_process_with_blank_redact_patterns_records_no_password_in_clear(tmp_path: Path) -> None:
    """A real process with FLOWLEDGER_REDACT_PATTERNS='' warns once and writes the password redacted to its sink."""
    target = tmp_path / "runs.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", BLANK_PATTERNS_CHILD],
        cwd=REPO_ROOT,
        env=child_env(
            FLOWLEDGER_REDACT_PATTERNS="",
            FLOWLEDGER_SINKS=f"jsonl:{target}",
            FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
            FLOWLEDGER_EXPORT_SPANS="0",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("FLOWLEDGER_REDACT_PATTERNS") == 1
    records = [json.loads(line) for line in target.read_text().splitlines()]
    (node,) = [r for r in records if r["kind"] == "node_finished"]
    assert node["data"]["input"] == {"user": "ann", "password": "[REDACTED]"}
    assert "hunter2" not in target.read_text()


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_idempotency_dir_is_reported_not_taken_for_the_working_directory(
    blank: str, caplog: pytest.LogCaptureFixture
) -> None:
    """FLOWLEDGER_IDEMPOTENCY_DIR='' is refused as FLOWLEDGER_SPOOL_DIR='' is: the records stay beside the spool."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({"FLOWLEDGER_IDEMPOTENCY_DIR": blank})
    assert settings.idempotency_dir is None
    assert f"FLOWLEDGER_IDEMPOTENCY_DIR={blank!r}" in caplog.text


@pytest.mark.parametrize("value", ["2.7", "1e30", "-1", "many", "nan"])
def test_max_retries_that_is_not_a_whole_count_is_reported(value: str, caplog: pytest.LogCaptureFixture) -> None:
    """FLOWLEDGER_MAX_RETRIES takes what configure() takes, an integer from 0: 2.7 is not cut to 2, nor 1e30 kept."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({"FLOWLEDGER_MAX_RETRIES": value})
    assert settings.max_retries == Settings().max_retries
    assert f"FLOWLEDGER_MAX_RETRIES={value!r}: it must be an integer, zero or more" in caplog.text


def test_max_retries_takes_a_whole_count() -> None:
    """FLOWLEDGER_MAX_RETRIES=0 and =12 are used as given."""
    assert settings_from_env({"FLOWLEDGER_MAX_RETRIES": "0"}).max_retries == 0
    assert settings_from_env({"FLOWLEDGER_MAX_RETRIES": " 12 "}).max_retries == 12


def test_an_empty_service_name_variable_is_unset(caplog: pytest.LogCaptureFixture) -> None:
    """FLOWLEDGER_SERVICE_NAME='' is unset, as OTel reads an empty variable: OTEL_SERVICE_NAME, else flowledger."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        both = settings_from_env({"FLOWLEDGER_SERVICE_NAME": "", "OTEL_SERVICE_NAME": "billing"})
        alone = settings_from_env({"FLOWLEDGER_SERVICE_NAME": ""})
    assert both.service_name == "billing"
    assert alone.service_name == "flowledger"
    assert not caplog.records
    assert settings_from_env({"FLOWLEDGER_SERVICE_NAME": "shop", "OTEL_SERVICE_NAME": "billing"}).service_name == "shop"


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_on_off_variable_keeps_its_default(blank: str, caplog: pytest.LogCaptureFixture) -> None:
    """FLOWLEDGER_CAPTURE= (a compose file's unset ${VAR}) is unset: capture, span export and the app provider stay
    on, the guard and `disabled` off, and nothing is reported; `0` still turns a setting off."""
    _forget_reports()
    names = ("CAPTURE", "EXPORT_SPANS", "OTEL_APP_PROVIDER", "CAPTURE_LOGS", "DISABLED", "IDEMPOTENCY_GUARD")
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        blanked = settings_from_env({f"FLOWLEDGER_{name}": blank for name in names})
    default = settings_from_env({})
    assert [getattr(blanked, name.lower()) for name in names] == [getattr(default, name.lower()) for name in names]
    assert (blanked.capture, blanked.export_spans, blanked.disabled) == (True, True, False)
    assert not caplog.records
    assert settings_from_env({"FLOWLEDGER_CAPTURE": "0"}).capture is False


def test_a_service_name_longer_than_the_receiver_takes_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """A service name over 256 characters (run_started's limit) is reported, and the default is used."""
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({"OTEL_SERVICE_NAME": "s" * 257})
    assert settings.service_name == "flowledger"
    assert "OTEL_SERVICE_NAME" in caplog.text


HEADER_SECRET = "SECRÉT99"


@pytest.mark.parametrize(
    ("pair", "named", "problem"),
    [
        (("api-key", HEADER_SECRET), "'api-key'", "U+00C9"),
        (("api-key", "SECR%C3%89T99"), "'api-key'", "U+00C9"),  # as sent: percent-decoded
        (("api-key", "SECRET%0Aevil"), "'api-key'", "a line break"),
        (("api-key", "SECRET\r\nX-Evil: 1"), "'api-key'", "a carriage return"),
        (("api-key", " SECRET"), "'api-key'", "starts or ends with a space"),
        (("api key", "SECRET"), "header name", "a space"),
    ],
)
def test_an_otlp_header_that_cannot_be_sent_is_refused_by_name_never_by_value(
    pair: tuple[str, str], named: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    """configure(otlp_headers=...) raises ConfigError naming the header and what is wrong, never its value; the
    variable is ignored with one warning saying the same."""
    with pytest.raises(flowledger.ConfigError) as caught:
        Settings().updated(otlp_headers=dict([pair]))
    message = str(caught.value)
    assert "otlp_headers" in message
    assert named in message
    assert problem in message
    assert "SECR" not in message
    if pair[1] != pair[1].strip():
        return  # the variable's entries are stripped, as OTel strips them: " SECRET" is usable there
    _forget_reports()
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        settings = settings_from_env({"OTEL_EXPORTER_OTLP_HEADERS": f"x-tenant=t1,{pair[0]}={pair[1]}"})
    assert settings.otlp_headers == ()
    assert "OTEL_EXPORTER_OTLP_HEADERS (value not shown)" in caplog.text
    assert named in caplog.text
    assert "SECR" not in caplog.text


def test_usable_otlp_headers_are_kept_from_a_mapping_or_pairs() -> None:
    """A mapping or a list of pairs is kept as pairs; inner spaces and percent-encoding are fine."""
    assert Settings().updated(otlp_headers={"Authorization": "Basic abc"}).otlp_headers == (
        ("Authorization", "Basic abc"),
    )
    assert Settings().updated(otlp_headers=[["x-tenant%2Did", "a%3Db"]]).otlp_headers == (("x-tenant%2Did", "a%3Db"),)
