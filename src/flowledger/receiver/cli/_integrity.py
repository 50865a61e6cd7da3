"""Is the record complete and consistent: the ``coverage`` and ``reconcile`` commands of the ``flowledger`` CLI.

Both read ``--db PATH`` or a running receiver at ``--url``, print ``--json``
for scripts, and exit 0 when all is well, 1 when something is missing or
drifted (CI can gate on them), 2 on a usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import click

from flowledger.receiver._config import DEFAULT_STUCK_AFTER_S
from flowledger.receiver.cli._api_params import WORKFLOW_ID
from flowledger.receiver.cli._commands import (
    EXIT_FAILURE,
    POSITIVE_SECONDS,
    _clean_errors,
    _db_option,
    _json_option,
    _key_option,
    _print_json,
    _source,
    _url_option,
)
from flowledger.receiver.cli._context_options import parse_time
from flowledger.receiver.cli._terminal import echo

__all__ = ["COMMANDS"]

_DEFAULTED: Final = click.core.ParameterSource.DEFAULT


def _sample_text(kind: str, sample: dict[str, Any]) -> str:
    """One sample of a coverage kind, in a line."""
    if kind == "producer_seq_gap":
        return (
            f"producer {sample['producer_id']}: {sample['missing']} of {sample['max_seq'] + 1} events missing "
            f"(last heard {sample['last_ts']}, run {sample['last_run_id']})"
        )
    if kind == "node_finished_missing":
        return (
            f"run {sample['run_id']} ({sample['run_status']}): node {sample['node_id']} attempt "
            f"{sample['attempt']} started {sample['started_at']}, never finished"
        )
    workflow = sample["workflow_id"] or "workflow unknown"
    if kind == "run_started_missing":
        return f"run {sample['run_id']} ({workflow}, {sample['status']}): no run_started"
    deadline = f", deadline {sample['deadline_s']:g} s" if sample.get("deadline_s") is not None else ""
    started = f"started {sample['started_at']}, " if sample.get("started_at") else ""
    return (
        f"run {sample['run_id']} ({workflow}, {sample['status']}): {started}"
        f"last event {sample['last_seen_at']}{deadline}, no run_finished"
    )


@click.command("coverage")
@click.option("--since", default=None, metavar="TIME", help="Only runs started at or after TIME (RFC 3339).")
@click.option(
    "--workflow", "workflow_id", type=WORKFLOW_ID, default=None, metavar="ID", help="Only runs of this workflow id."
)
@click.option(
    "--stuck-after-s",
    type=POSITIVE_SECONDS,
    default=DEFAULT_STUCK_AFTER_S,
    show_default=True,
    help="With --db: a run silent this long (or three of its heartbeat intervals) should have finished.",
)
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def coverage_command(
    since: str | None,
    workflow_id: str | None,
    stuck_after_s: float,
    as_json: bool,
    db: Path | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Find runs missing core events: exit 0 and PASS, or exit 1 and FAIL_CORE_MISSING with counts and samples.

    Missing: run_finished of a run silent past its heartbeat threshold or
    deadline; run_started of a run whose other events arrived; node_finished
    of an attempt in a finished run; events of a producer session (gaps in
    its sequence numbers, counted as sessions_with_gaps).
    """
    from flowledger._wire import now_ts
    from flowledger.receiver.cli._sources import UrlSource
    from flowledger.receiver.store._integrity import CoverageQuery, CoverageStatus

    query = CoverageQuery(
        now=now_ts(), stuck_after_s=stuck_after_s, since=parse_time(since, "--since"), workflow_id=workflow_id
    )
    source = _source(db, url, api_key)
    context = click.get_current_context()
    if isinstance(source, UrlSource) and context.get_parameter_source("stuck_after_s") is not _DEFAULTED:
        raise click.UsageError(
            "--stuck-after-s applies to --db; a receiver judges with its own threshold "
            "(FLOWLEDGER_RECEIVER_STUCK_AFTER_S)"
        )
    report = source.coverage(query)
    if as_json:
        _print_json(report.as_json())
    else:
        echo(report.status.value)
        echo(f"sessions_with_gaps: {report.sessions_with_gaps} ({report.events_missing} events missing)")
        for kind, tally in report.kinds.items():
            echo(f"{kind.value}: {tally.count}")
            for sample in tally.samples:
                echo(f"  {_sample_text(kind.value, sample)}")
    if report.status is not CoverageStatus.PASS:
        sys.exit(EXIT_FAILURE)


@click.command("reconcile")
@click.option("--repair", is_flag=True, help="Rewrite the drifted projection rows from the fold, then check again.")
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def reconcile_command(repair: bool, as_json: bool, db: Path | None, url: str | None, api_key: str | None) -> None:
    """Compare the projections with a fresh fold of the ledger: exit 0 when they match, 1 on drift.

    With --repair the drifted runs' rows are rewritten from the fold and the
    check runs again: exit 0 once it is clean.
    """
    source = _source(db, url, api_key)
    report = source.reconcile(repair=repair)
    after = source.reconcile(repair=False) if repair and not report.clean else None
    if as_json:
        _print_json({**report.as_json(), "after_repair": None if after is None else after.as_json()})
    else:
        verdict = "clean" if report.clean else f"DRIFT in {report.drift_count} rows"
        echo(f"{verdict}: {report.runs_checked} runs checked, {report.events_folded} events folded")
        for kind, tally in report.kinds.items():
            shown = f"  e.g. {', '.join(tally.samples)}" if tally.samples else ""
            echo(f"{kind.value}: {tally.count} ({tally.runs} runs, {tally.attempts} attempts){shown}")
        if after is not None:
            state = "clean" if after.clean else f"still {after.drift_count} rows drifted"
            echo(f"repaired {report.repaired} runs from the ledger; checked again: {state}")
    if not (after.clean if after is not None else report.clean):
        sys.exit(EXIT_FAILURE)


COMMANDS: Final[list[click.Command]] = [coverage_command, reconcile_command]
"""The integrity commands, for ``flowledger.cli`` to add to its group."""
