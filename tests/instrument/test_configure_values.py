"""configure() keeps each value in its type (a path as a Path) or refuses it with ConfigError naming the setting."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger.instrument._config import Settings, SinkKind, SinkSpec
from flowledger.testing import capture_events


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("sample_rate", None),
        ("sample_rate", True),
        ("sample_rate", [0.5]),
        ("sample_rate_by_workflow", {"orders": None}),
        ("sample_rate_by_workflow", {"orders": False}),
        ("sample_rate_by_workflow", {"orders": "0.5"}),
        ("sample_rate_by_workflow", 5),
        ("queue_max_items", None),
        ("queue_max_items", True),
        ("queue_max_bytes", "1024"),
        ("capture_limit_bytes", 4096.5),
        ("log_max_lines", True),
        ("max_retries", None),
        ("max_retries", True),
        ("max_retries", 2.5),
        ("disabled", "no"),
        ("idempotency_guard", "false"),
        ("capture", "false"),
        ("export_spans", "no"),
        ("otel_app_provider", 1),
        ("capture_logs", None),
        ("service_name", 123),
        ("service_name", ""),
        ("redact_patterns", ""),
        ("redact_patterns", 5),
        ("redact_patterns", ["token", 1]),
        ("redact_patterns", [" "]),
        ("api_key", 123),
        ("otlp_headers", "api-key=x"),
        ("otlp_headers", {"api-key": 5}),
        ("otlp_headers", [("api-key",)]),
    ],
)
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_setting(
    setting: str, value: Any, configure: Callable[..., Any]
) -> None:
    """A value of the wrong type (a string for an on/off setting, a number for a name or key, a list where a number
    goes): ConfigError naming the setting, never a TypeError nor a value read as something else."""
    with pytest.raises(flowledger.ConfigError, match=setting):
        Settings().updated(**{setting: value})
    with pytest.raises(flowledger.ConfigError, match=setting):
        configure(**{setting: value})


class _PathLike:
    """An ``os.PathLike`` that is not a ``pathlib.Path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


def test_a_str_spool_dir_works_with_a_jsonl_sink(tmp_path: Path, configure: Callable[..., Any]) -> None:
    """configure(spool_dir=str) is kept as a Path: a jsonl sink under it starts and writes every event."""
    target = tmp_path / "runs.jsonl"
    settings = configure(spool_dir=str(tmp_path / "spool"), sinks=f"jsonl:{target}", export_spans=False)
    assert settings.spool_dir == tmp_path / "spool"

    @flowledger.node
    def step(x: int) -> int:
        return x + 1

    with flowledger.run("wf"):
        step(1)
    assert flowledger.flush(10)
    assert flowledger.stats().get("internal_errors", 0) == 0
    kinds = [json.loads(line)["kind"] for line in target.read_text().splitlines()]
    assert kinds == ["run_started", "node_finished", "run_finished"]


@pytest.mark.parametrize(
    ("setting", "given", "kept"),
    [
        ("spool_dir", "/var/tmp/fl-spool", Path("/var/tmp/fl-spool")),
        ("spool_dir", _PathLike("/var/tmp/fl-spool"), Path("/var/tmp/fl-spool")),
        ("idempotency_dir", "/var/tmp/fl-seen", Path("/var/tmp/fl-seen")),
        ("idempotency_dir", _PathLike("/var/tmp/fl-seen"), Path("/var/tmp/fl-seen")),
    ],
)
def test_a_path_setting_given_as_a_str_or_path_like_is_a_path(setting: str, given: Any, kept: Path) -> None:
    """A directory setting given as a str or an os.PathLike is kept as a pathlib.Path."""
    value = getattr(Settings().updated(**{setting: given}), setting)
    assert type(value) is type(kept)
    assert value == kept


def test_a_jsonl_sink_spec_with_a_str_file_gets_a_path() -> None:
    """A SinkSpec naming its jsonl file as a str is kept with a pathlib.Path."""
    (spec,) = Settings().updated(sinks=[SinkSpec(SinkKind.JSONL, "/var/tmp/runs.jsonl")]).sinks  # type: ignore[arg-type]
    assert spec.path == Path("/var/tmp/runs.jsonl")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("spool_dir", 42),
        ("spool_dir", None),
        ("spool_dir", ""),
        ("spool_dir", b"/var/tmp/spool"),
        ("idempotency_dir", 42),
        ("idempotency_dir", " "),
    ],
)
def test_a_path_setting_of_another_type_is_a_config_error_naming_it(setting: str, value: Any) -> None:
    """A directory setting that is no path (a number, None, an empty string, bytes) is a ConfigError naming it."""
    with pytest.raises(flowledger.ConfigError, match=setting):
        Settings().updated(**{setting: value})
    assert any(problem.startswith(f"{setting} must be") for problem in Settings(**{setting: value}).problems())


@pytest.mark.parametrize(
    ("given", "redacted", "clear"),
    [
        ("password", "password", "name"),
        ("password, ssn", "ssn", "name"),
        (["token"], "token", "password"),
        (("token",), "token", "password"),
        ({"token"}, "token", "password"),
    ],
)
def test_redact_patterns_are_whole_fragments_whatever_the_collection(
    given: Any, redacted: str, clear: str, configure: Callable[..., Any]
) -> None:
    """redact_patterns as one comma-separated str (as the variable) or a list, tuple or set: each entry is a key
    fragment, never read letter by letter (which redacted ``name``) nor refused as unhashable."""
    configure(redact_patterns=given, sinks="memory", export_spans=False)

    @flowledger.node
    def step(payload: dict[str, str]) -> None:
        return None

    with capture_events() as events, flowledger.run("wf"):
        step({redacted: "s3cr3t", clear: "kept"})
    (node,) = events.nodes("step")
    assert node["data"]["input"] == {redacted: "[REDACTED]", clear: "kept"}


def test_an_empty_redact_patterns_tuple_turns_redaction_off_explicitly() -> None:
    """redact_patterns=() is the one way to record every key in clear; a blank str is refused instead."""
    assert Settings().updated(redact_patterns=()).redact_regex is None
    with pytest.raises(flowledger.ConfigError, match="an empty tuple records every key in clear"):
        Settings().updated(redact_patterns=" , ")


@pytest.mark.parametrize("flag", ["disabled", "capture", "export_spans", "otel_app_provider", "capture_logs"])
def test_every_flag_takes_true_and_false(flag: str) -> None:
    """Each on/off setting takes the bools themselves."""
    assert getattr(Settings().updated(**{flag: True}), flag) is True
    assert getattr(Settings().updated(**{flag: False}), flag) is False


def test_a_string_false_never_turns_the_idempotency_guard_on(configure: Callable[..., Any]) -> None:
    """configure(idempotency_guard="false") is refused; the guard stays as it was (off by default)."""
    with pytest.raises(flowledger.ConfigError, match="idempotency_guard must be True or False, not 'false'"):
        configure(idempotency_guard="false")
    assert flowledger.configure().idempotency_guard is False
