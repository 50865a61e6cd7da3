"""``flowledger diff RUN_A RUN_B``: two runs compared node by node (see :mod:`flowledger.receiver._run_diff`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import click

from flowledger.receiver.cli._api_params import RUN_ID, RUN_PROJECT
from flowledger.receiver.cli._commands import (
    _clean_errors,
    _db_option,
    _fail,
    _json_option,
    _key_option,
    _print_json,
    _source,
    _url_option,
)
from flowledger.receiver.cli._terminal import echo

__all__ = ["COMMANDS"]

_MAX_CHANGES_SHOWN: Final = 5
"""Changes per payload printed in the text form (``--json`` has them all)."""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _delta_text(delta: dict[str, Any], unit: str) -> str:
    if delta["delta"] is None:
        return ""
    sign = "+" if delta["delta"] >= 0 else ""
    return f"{sign}{delta['delta']:.0f} ms" if unit == "ms" else f"{sign}{delta['delta']:.6f} USD"


def _changes(label: str, changes: list[dict[str, Any]]) -> None:
    for change in changes[:_MAX_CHANGES_SHOWN]:
        a = json.dumps(change["a"], ensure_ascii=False)[:60]
        b = json.dumps(change["b"], ensure_ascii=False)[:60]
        echo(f"      {label} {change['path']}: {change['kind']} {a} -> {b}")
    if len(changes) > _MAX_CHANGES_SHOWN:
        echo(f"      {label} ... and {len(changes) - _MAX_CHANGES_SHOWN} more changes")


def _print_diff(result: dict[str, Any]) -> None:
    a, b = result["a"], result["b"]
    echo(f"A {a['run_id']}  {a['workflow_id']}  {a['status']}  {_ms(a['duration_ms'])}")
    echo(f"B {b['run_id']}  {b['workflow_id']}  {b['status']}  {_ms(b['duration_ms'])}")
    if result["same_workflow"] is False:
        echo(f"runs of different workflows: {a['workflow_id']} (A) and {b['workflow_id']} (B)")
    same_definition = result["same_definition"]
    echo(
        "definition "
        + ("unknown" if same_definition is None else "same" if same_definition else "changed")
        + f"  input {'same' if result['input_same'] else 'different'}"
        + f"  duration {_delta_text(result['duration_ms'], 'ms') or '-'}"
        + f"  cost {_delta_text(result['cost_usd'], 'usd') or '-'}"
    )
    first = result["first_divergence"]
    echo(f"first divergence: {first['node_id']} ({first['verdict']})" if first else "no divergence")
    _changes("input", result["input_changes"])
    for node in result["nodes"]:
        status = node["status"]
        shown = status["a"] if status["a"] == status["b"] else f"{status['a'] or '-'} -> {status['b'] or '-'}"
        echo(
            f"  {node['node_id']:<20} {node['verdict']:<28} {shown or '':<22} {_delta_text(node['duration_ms'], 'ms')}"
        )
        _changes("input", node["input_changes"])
        _changes("output", node["output_changes"])


@click.command("diff")
@click.argument("run_a", type=RUN_ID)
@click.argument("run_b", type=RUN_ID)
@click.option(
    "--project",
    type=RUN_PROJECT,
    default=None,
    help="Both runs of this project, when an id is used in several (runs are per project).",
)
@click.option("--project-a", type=RUN_PROJECT, default=None, help="RUN_A of this project (instead of --project).")
@click.option("--project-b", type=RUN_PROJECT, default=None, help="RUN_B of this project (instead of --project).")
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def diff_command(
    run_a: str,
    run_b: str,
    project: str | None,
    project_a: str | None,
    project_b: str | None,
    as_json: bool,
    db: Path | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Compare two runs node by node: first divergence, status, duration and cost deltas, payload diffs."""
    from flowledger.receiver._run_diff import diff_runs

    source = _source(db, url, api_key)
    runs = []
    # An empty --project-a/-b is a value (the run without a project), not "the same as --project".
    chosen = [project if one is None else one for one in (project_a, project_b)]
    for run_id, of in zip((run_a, run_b), chosen, strict=True):
        run = source.get_run(run_id, of)
        if run is None:
            _fail(f"there is no run {run_id!r}" + ("" if of is None else f" of project {of!r}"))
            return
        runs.append(run)
    result = diff_runs(runs[0], runs[1])
    if as_json:
        _print_json(result)
    else:
        _print_diff(result)


COMMANDS: Final[list[click.Command]] = [diff_command]
