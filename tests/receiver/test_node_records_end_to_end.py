"""Cost by category, custom metrics and artifacts: from an SDK process through a receiver to API, CLI and export."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowledger.instrument._artifact import HASH_LIMIT_BYTES
from flowledger.receiver.cli._analytics import metrics_command
from flowledger.receiver.cli._commands import export_command, show_command
from tests.receiver._support import LiveReceiver

ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = textwrap.dedent(
    """
    import sys
    from decimal import Decimal
    import flowledger

    small, big = sys.argv[1], sys.argv[2]

    @flowledger.node
    def ask(prompt):
        flowledger.cost(tokens_in=(1200, 0.0036), tokens_out=(300, Decimal("0.0045")))
        flowledger.cost(external_requests={"stripe": (3, 0.09)}, penalties={"rate_limit": 1})
        flowledger.cost(tool_calls=2, usd=0.1)
        flowledger.metric("provider_cache_hit", 1, provider="openai")
        flowledger.metric("provider_cache_hit", 0, provider="openai")
        flowledger.metric("latency_s", 0.25)
        flowledger.artifact(small)
        flowledger.artifact(big, media_type="application/octet-stream")
        flowledger.artifact(b'{"answer": 42}', name="answer.json", uri="s3://bucket/answer.json")
        return "ok"

    with flowledger.run("llm-flow", name="LLM flow"):
        ask("a")
        flowledger.cost(usd=0.2)  # run level: in the run's total, on no node

    print("flushed" if flowledger.flush(timeout_s=10.0) else "not flushed")
    """
)


@pytest.fixture
def recorded(live: LiveReceiver, tmp_path: Path) -> tuple[LiveReceiver, dict[str, Any], Path, Path]:
    """A receiver holding one run whose node reported cost by category, metrics and two file artifacts."""
    small = tmp_path / "report.csv"
    small.write_bytes(b"a,b\n1,2\n")
    big = tmp_path / "huge.bin"
    with big.open("wb") as f:
        f.truncate(HASH_LIMIT_BYTES + 1)  # sparse: over the line without writing 50 MiB
    script = tmp_path / "workflow.py"
    script.write_text(WORKFLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env |= {
        "FLOWLEDGER_ENDPOINT": live.url,
        "FLOWLEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(small), str(big)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flushed"
    (run,) = live.get("/api/runs").json()["runs"]
    return live, live.get(f"/api/runs/{run['run_id']}").json(), small, big


def test_cost_breakdown_is_exact_on_the_node_and_the_run(
    recorded: tuple[LiveReceiver, dict[str, Any], Path, Path],
) -> None:
    """Each category keeps its count and exact nano-dollars; the run's is its node's plus what it reported itself."""
    _, run, _, _ = recorded
    (node,) = run["nodes"]
    breakdown = node["cost"]["breakdown"]
    assert {k: (v["count"], v["usd_nanos"]) for k, v in breakdown.items()} == {
        "tokens_in": (1200, 3_600_000),
        "tokens_out": (300, 4_500_000),
        "external_requests:stripe": (3, 90_000_000),
        "penalty:rate_limit": (1, 0),
        "tool_calls": (2, 0),
        "other": (0, 100_000_000),
    }
    assert node["cost"]["usd"] == 0.1981
    assert (node["cost"]["tokens"], node["cost"]["external_requests"], node["cost"]["tool_calls"]) == (1500, 3, 2)
    run_breakdown = run["cost"]["breakdown"]
    assert run_breakdown["other"]["usd_nanos"] == 300_000_000
    assert {k: v for k, v in run_breakdown.items() if k != "other"} == {
        k: v for k, v in breakdown.items() if k != "other"
    }
    assert run["cost"]["usd"] == 0.3981
    assert sum(v["usd_nanos"] for v in run_breakdown.values()) == 398_100_000


def test_artifacts_are_hashed_under_the_line_and_not_over_it(
    recorded: tuple[LiveReceiver, dict[str, Any], Path, Path],
) -> None:
    """A small file and bytes carry size and sha256; a file over 50 MiB carries its size and why it was not hashed."""
    _, run, small, big = recorded
    small_record, big_record, bytes_record = run["nodes"][0]["artifacts"]
    assert small_record == {
        "name": "report.csv",
        "uri": small.absolute().as_uri(),
        "media_type": "text/csv",
        "size_bytes": 8,
        "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest(),
        "sha256_skipped": None,
    }
    assert big_record["size_bytes"] == HASH_LIMIT_BYTES + 1
    assert big_record["sha256"] is None
    assert "over the 52428800 byte (50 MiB) hashing limit" in big_record["sha256_skipped"]
    assert big_record["uri"] == big.absolute().as_uri()
    assert bytes_record["sha256"] == hashlib.sha256(b'{"answer": 42}').hexdigest()
    assert (bytes_record["uri"], bytes_record["media_type"]) == ("s3://bucket/answer.json", "application/json")


def test_metrics_are_on_the_node_and_added_up_without_run_ids(
    recorded: tuple[LiveReceiver, dict[str, Any], Path, Path],
) -> None:
    """The node has one summary per series; /api/metrics/custom adds them up by workflow, node, name, labels, hour."""
    live, run, _, _ = recorded
    metrics = {m["name"]: m for m in run["nodes"][0]["metrics"]}
    assert metrics["provider_cache_hit"] == {
        "name": "provider_cache_hit",
        "labels": {"provider": "openai"},
        "count": 2,
        "sum": 1,
        "min": 0,
        "max": 1,
        "value": 0,
    }
    rows = live.get("/api/metrics/custom", params={"name": "provider_cache_hit"}).json()["metrics"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["workflow_id"], row["node_id"], row["labels"]) == ("llm-flow", "ask", {"provider": "openai"})
    assert (row["count"], row["sum"], row["min"], row["max"], row["avg"]) == (2, 1, 0, 1, 0.5)
    assert row["hour"] == run["nodes"][0]["completed_at"][:13] + ":00:00.000000Z"
    assert run["run_id"] not in json.dumps(rows)
    labelled = live.get("/api/metrics/custom", params={"label": "provider=anthropic"}).json()["metrics"]
    assert labelled == []
    bad = live.get("/api/metrics/custom", params={"label": "provider"})
    assert bad.status_code == 400
    assert "NAME=VALUE" in bad.json()["error"]
    assert live.get("/api/metrics/custom", params={"run_id": run["run_id"]}).status_code == 400


@pytest.mark.parametrize("how", ["db", "url"])
def test_show_prints_cost_by_category_metrics_and_artifacts(
    recorded: tuple[LiveReceiver, dict[str, Any], Path, Path], how: str
) -> None:
    """show's text has the breakdown (exact dollars), each metric and each artifact; --json has the records whole."""
    live, run, _, _ = recorded
    where = ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]
    text = CliRunner().invoke(show_command, [run["run_id"], *where], terminal_width=200)
    assert text.exit_code == 0, text.output
    assert "tokens_in 1200 ($0.0036)" in text.output
    assert "external_requests:stripe 3 ($0.09)" in text.output
    assert "other $0.3" in text.output
    assert "metric    provider_cache_hit{provider=openai} = 0 (count 2, sum 1, min 0, max 1)" in text.output
    assert "artifact  report.csv  text/csv  8 bytes  sha256 " in text.output
    assert "not hashed: 52428801 bytes is over" in text.output
    as_json = CliRunner().invoke(show_command, [run["run_id"], "--json", *where])
    shown = json.loads(as_json.output)
    assert shown["nodes"][0]["artifacts"] == run["nodes"][0]["artifacts"]
    assert shown["cost"]["breakdown"] == run["cost"]["breakdown"]


def test_export_has_the_records_whole_in_jsonl_and_flattened_in_csv(
    recorded: tuple[LiveReceiver, dict[str, Any], Path, Path],
) -> None:
    """JSONL carries breakdown, metrics and artifacts as the API has them; CSV a few stable cost columns."""
    live, run, _, _ = recorded
    jsonl = CliRunner().invoke(export_command, ["--format", "jsonl", "--url", live.url])
    (line,) = jsonl.output.splitlines()
    exported = json.loads(line)
    assert exported["cost"]["breakdown"] == run["cost"]["breakdown"]
    assert exported["nodes"][0]["metrics"] == run["nodes"][0]["metrics"]
    assert exported["nodes"][0]["artifacts"] == run["nodes"][0]["artifacts"]
    csv_text = CliRunner().invoke(export_command, ["--format", "csv", "--db", str(live.db_path)]).output
    (row,) = csv.DictReader(io.StringIO(csv_text))
    assert (row["cost_usd"], row["cost_tokens_in"], row["cost_tokens_out"]) == ("0.3981", "1200", "300")
    assert (row["cost_penalties"], row["cost_penalties_usd"]) == ("1", "0.0")


@pytest.mark.parametrize("how", ["db", "url"])
def test_the_metrics_command_adds_them_up_as_the_api_does(
    recorded: tuple[LiveReceiver, dict[str, Any], Path, Path], how: str
) -> None:
    """flowledger metrics --json is GET /api/metrics/custom's rows (filters too); its table has each series' hour."""
    live, run, _, _ = recorded
    where = ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]
    answer = CliRunner().invoke(metrics_command, ["--json", *where])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output)["metrics"] == live.get("/api/metrics/custom").json()["metrics"]
    filtered = CliRunner().invoke(metrics_command, ["--json", "--label", "provider=openai", "--node", "ask", *where])
    (row,) = json.loads(filtered.output)["metrics"]
    assert (row["name"], row["count"], row["sum"], row["avg"]) == ("provider_cache_hit", 2, 1, 0.5)
    assert run["run_id"] not in filtered.output
    table = CliRunner().invoke(metrics_command, where, terminal_width=200)
    assert table.exit_code == 0, table.output
    line = next(line for line in table.output.splitlines() if "provider_cache_hit" in line)
    assert "llm-flow / ask" in line
    assert [cell for cell in line.split() if cell.replace(".", "").isdigit()][-5:] == ["2", "1", "0.5", "0", "1"]
    bad = CliRunner().invoke(metrics_command, ["--label", "provider", *where])
    assert bad.exit_code == 2
    assert "--label" in bad.output
    assert "NAME=VALUE" in bad.output
