"""Query parameters a request cannot make expensive or ambiguous: attr. filters capped and folded, exact RFC 3339
times, empty time ranges, and the CLI's runs and stats alike on --db and --url and at 80 columns."""

from __future__ import annotations

import json
import re
from typing import Any, Final

import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._analytics import errors_command, stats_command
from flowledger.receiver.cli._commands import runs_command
from flowledger.receiver.store._search import ATTRIBUTE_FILTERS_MAX
from tests.receiver._support import LiveReceiver, RunEvents, typical_run


def _runs(live: LiveReceiver, query: str) -> Any:
    answer = live.get(f"/api/runs?{query}")
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def tiered(live: LiveReceiver) -> dict[str, RunEvents]:
    """A gold run in the eu, a silver one in the us."""
    gold = RunEvents().start(attributes={"tier": "gold", "region": "eu"}).node("fetch").finish()
    silver = RunEvents().start(attributes={"tier": "silver", "region": "us"}).node("fetch").finish()
    assert live.post(gold.events + silver.events).status_code == 200
    return {"gold": gold, "silver": silver}


def test_attr_filters_past_the_cap_are_a_400_naming_attr(live: LiveReceiver, tiered: dict[str, RunEvents]) -> None:
    """More different attr. filters than the cap (and a thousand, which SQLite cannot nest) is a 400 naming attr.
    and the limit; the cap itself is taken."""
    at_cap = "&".join(f"attr.k{i}=v" for i in range(ATTRIBUTE_FILTERS_MAX))
    assert _runs(live, at_cap)["runs"] == []
    for count in (ATTRIBUTE_FILTERS_MAX + 1, 1000):
        answer = live.get("/api/runs?" + "&".join(f"attr.k{i}=v" for i in range(count)) + "&limit=1")
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert "attr." in error
        assert f"at most {ATTRIBUTE_FILTERS_MAX}" in error
    one_key = live.get("/api/runs?" + "&".join(f"attr.tier=v{i}" for i in range(ATTRIBUTE_FILTERS_MAX + 1)))
    assert one_key.status_code == 400


def test_identical_attr_filters_count_once(live: LiveReceiver, tiered: dict[str, RunEvents]) -> None:
    """A thousand repeats of one attr. filter answer what it answers alone (not a 500 or a 400); one key given
    two values is an empty page."""
    alone = _runs(live, "attr.tier=gold")
    repeated = _runs(live, "&".join("attr.tier=gold" for _ in range(1000)))
    assert [run["run_id"] for run in repeated["runs"]] == [tiered["gold"].run_id]
    assert repeated == alone
    both = _runs(live, "&".join("attr.tier=gold&attr.region=eu&attr.tier=silver" for _ in range(500)))
    assert (both["runs"], both["total"], both["next"]) == ([], 0, None)


_NOT_RFC_3339: Final = (
    "20260301T000000Z",
    "2026-03-01 00:00:00Z",
    "2026-03-01T00:00:00,5Z",
    "2026-03-01T00:00Z",
    "2026-03-01T00:00:00+0100",
    "2026-03-01T00:00:00.Z",
)
"""ISO 8601 spellings Python's ``fromisoformat`` reads as a time with an offset, none of them RFC 3339."""


def test_time_parameters_take_rfc_3339_only(live: LiveReceiver) -> None:
    """ISO 8601's other spellings are a 400 naming the parameter on every route with times; every RFC 3339 form
    (T or t, Z or z, an offset, a fraction of any length) is taken."""
    for since in _NOT_RFC_3339:
        for path in ("/api/runs", "/api/stats", "/api/errors", "/api/metrics/custom"):
            answer = live.get(path, params={"since": since})
            assert answer.status_code == 400, (path, since, answer.text)
            assert "since" in answer.json()["error"]
            assert "RFC 3339" in answer.json()["error"]
        assert live.get("/api/runs", params={"until": since}).status_code == 400
    for since in (
        "2026-03-01T00:00:00Z",
        "2026-03-01t00:00:00z",
        "2026-03-01T01:00:00+01:00",
        "2026-02-28T23:00:00.123456789-01:00",
    ):
        for path in ("/api/runs", "/api/stats", "/api/errors"):
            assert live.get(path, params={"since": since}).status_code == 200, (path, since)


def test_cli_times_take_rfc_3339_only(live: LiveReceiver) -> None:
    """--since of runs, stats and errors refuses what the API refuses, exit 2 naming the option."""
    for command in (runs_command, stats_command, errors_command):
        for since in _NOT_RFC_3339:
            result = CliRunner().invoke(command, ["--since", since, "--db", str(live.db_path)])
            assert result.exit_code == 2, (command.name, result.output)
            assert "--since" in result.output
        taken = CliRunner().invoke(command, ["--since", "2026-03-01t00:00:00z", "--db", str(live.db_path)])
        assert taken.exit_code == 0, (command.name, taken.output)


def test_cli_attr_filters_are_capped_and_folded(live: LiveReceiver, tiered: dict[str, RunEvents]) -> None:
    """runs --attr past the cap is a usage error naming --attr; repeats of one filter count once."""
    where = ["--db", str(live.db_path)]
    many = [arg for i in range(ATTRIBUTE_FILTERS_MAX + 1) for arg in ("--attr", f"k{i}=v")]
    refused = CliRunner().invoke(runs_command, [*many, *where])
    assert refused.exit_code == 2
    assert "--attr" in refused.output
    repeated = [arg for _ in range(1000) for arg in ("--attr", "tier=gold")]
    found = CliRunner().invoke(runs_command, ["--json", *repeated, *where])
    assert found.exit_code == 0, found.output
    assert [run["run_id"] for run in json.loads(found.output)["runs"]] == [tiered["gold"].run_id]


def _failure_ts(run: RunEvents) -> str:
    return str(next(e["ts"] for e in run.events if e["kind"] == "node_finished" and e["data"]["status"] == "failed"))


def test_an_empty_time_range_has_no_error_groups(live: LiveReceiver) -> None:
    """until at or before since answers no error groups, as /api/stats answers no groups, though both fall in
    one hour."""
    run = typical_run()
    assert live.post(run.events).status_code == 200
    failed_at = _failure_ts(run)
    hour = failed_at[:13] + ":00:00Z"
    assert failed_at > hour  # the failure is after the start of its hour
    assert live.get("/api/errors", params={"since": hour, "until": failed_at}).json()["groups"] != []
    for until in (failed_at, hour):
        for path in ("/api/errors", "/api/stats"):
            answer = live.get(path, params={"since": failed_at, "until": until})
            assert answer.status_code == 200, answer.text
            assert answer.json()["groups"] == [], (path, until)


def test_runs_json_is_the_same_from_db_and_url(live: LiveReceiver) -> None:
    """runs --json prints identical runs (trace_url included, null without a template) from --db and --url."""
    runs = [typical_run(), RunEvents().start().node("fetch").finish()]
    assert live.post([e for run in runs for e in run.events]).status_code == 200
    env = {"FLOWLEDGER_TRACE_URL_TEMPLATE": None}
    from_db = CliRunner().invoke(runs_command, ["--json", "--db", str(live.db_path)], env=env)
    from_url = CliRunner().invoke(runs_command, ["--json", "--url", live.url], env=env)
    assert from_db.exit_code == 0, from_db.output
    assert from_url.exit_code == 0, from_url.output
    assert json.loads(from_db.output) == json.loads(from_url.output)
    assert [run["trace_url"] for run in json.loads(from_db.output)["runs"]] == [None, None]


def test_stats_table_keeps_its_key_and_whole_figures_at_80_columns(live: LiveReceiver) -> None:
    """At 80 columns (any pipe) every group's key and every figure are whole, however wide the costs."""
    runs = [typical_run(), typical_run(workflow_id="billing-and-invoicing")]
    for run in runs:
        run.events[-1]["data"]["cost"]["usd"] = 1_234_567_890.125
    assert live.post([e for run in runs for e in run.events]).status_code == 200
    shown = CliRunner().invoke(stats_command, ["--db", str(live.db_path)], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert max(map(len, lines)) <= 80
    assert "…" not in shown.output
    assert lines[1].split()[0] == "key"
    keys = {match.group(1) for line in lines if (match := re.match(r"(\S+) +1 +1 +0\.0% ", line))}
    assert keys == {"billing-and-invoicing", "order-intake"}
    assert shown.output.count("$1,234,567,890.1250") == 4  # each group's total and average
    wide = CliRunner().invoke(stats_command, ["--db", str(live.db_path)], env={"COLUMNS": "200"})
    assert "billing-and-invoicing" in wide.output
    assert "…" not in wide.output


def test_an_unknown_parameter_beside_attr_filters_lists_the_pattern(live: LiveReceiver) -> None:
    """The 400 for an unknown parameter says the route takes attr.KEY=VALUE, not the filters it was given."""
    answer = live.get("/api/runs?attr.k1=v&attr.k2=v&workflow=x")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith("unknown query parameter 'workflow'; this route takes ")
    assert "attr.KEY=VALUE" in error
    assert "attr.k1" not in error


def test_custom_metric_label_filters_are_capped_and_a_name_given_two_values_matches_nothing(
    live: LiveReceiver,
) -> None:
    """`label=` filters of /api/metrics/custom: repeats count once, more than 20 names is a 400 (a thousand was a
    500), and one name given two values answers no rows (the last value was kept)."""
    run = RunEvents(workflow_id="agent").start().node("ask").finish()
    finish = next(e for e in run.events if e["kind"] == "node_finished")
    finish["data"]["workflow_id"] = run.workflow_id
    finish["data"]["metrics"] = [
        {"name": "hit", "labels": {"provider": "openai"}, "count": 1, "sum": 1, "min": 1, "max": 1, "value": 1}
    ]
    assert live.post(run.events).json()["accepted"] == len(run.events)
    path = "/api/metrics/custom?label="
    assert len(live.get(path + "provider=openai").json()["metrics"]) == 1
    assert len(live.get(path + "&label=".join(["provider=openai"] * 500)).json()["metrics"]) == 1
    assert live.get(path + "provider=openai&label=provider=anthropic").json()["metrics"] == []
    assert live.get(path + "provider=anthropic&label=provider=openai").json()["metrics"] == []
    for count in (21, 1000):
        answer = live.get(path + "&label=".join(f"k{i}=v" for i in range(count)))
        assert answer.status_code == 400, answer.text
        assert "at most 20 different label names" in answer.json()["error"]
    assert live.get(path + "&label=".join(f"k{i}=v" for i in range(20))).json()["metrics"] == []


def test_an_until_finer_than_microseconds_keeps_the_run_of_that_microsecond(
    live: LiveReceiver, tiered: dict[str, RunEvents]
) -> None:
    """`until` is an exclusive bound: half a microsecond after a run's start, the run is before it (the fraction was
    cut, making the bound the start itself); on the API, the viewer and the CLI."""
    gold = tiered["gold"]
    assert gold.started_at.endswith("Z")
    just_after = gold.started_at[:-1] + "5Z"
    listed = _runs(live, f"until={just_after}")
    assert gold.run_id in [run["run_id"] for run in listed["runs"]]
    viewer = live.get("/api/viewer/runs", params={"until": just_after}).json()
    assert gold.run_id in [run["run_id"] for run in viewer["runs"]]
    result = CliRunner().invoke(runs_command, ["--until", just_after, "--json", "--db", str(live.db_path)])
    assert result.exit_code == 0, result.output
    assert gold.run_id in [run["run_id"] for run in json.loads(result.output)["runs"]]
