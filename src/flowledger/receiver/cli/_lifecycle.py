"""The ledger-lifecycle commands of the ``flowledger`` CLI: purge, keygen, checkpoint, prove, verify-proof.

``flowledger.cli`` mounts :data:`COMMANDS`. Like :mod:`._commands`, importing
this module is cheap: the database driver and the server stay unimported
until a command needs them.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from flowledger.receiver.cli._api_params import RUN_ID, RUN_PROJECT
from flowledger.receiver.cli._commands import (
    _clean_errors,
    _db_option,
    _json_option,
    _key_option,
    _print_json,
    _source,
    _url_option,
)
from flowledger.receiver.cli._context_options import parse_time
from flowledger.receiver.cli._output_file import OUTPUT_FILE
from flowledger.receiver.cli._terminal import echo

if TYPE_CHECKING:
    from flowledger.receiver.store._protocol import EntryProof, VerifyReport

__all__ = ["COMMANDS"]


@click.command("purge")
@click.option("--run", "run_ids", type=RUN_ID, multiple=True, metavar="ID", help="Purge this run (repeatable).")
@click.option("--workflow", "workflow_id", default=None, metavar="ID", help="Purge this workflow's runs.")
@click.option(
    "--before", default=None, metavar="TIME", help="With --workflow: only runs started before TIME (RFC 3339)."
)
@click.option(
    "--project",
    type=RUN_PROJECT,
    default=None,
    help="With --run: the run of this project, when its id is used in several (runs are per project).",
)
@_db_option(None)
@_url_option
@_key_option
@_json_option
@_clean_errors
def purge_command(
    run_ids: tuple[str, ...],
    workflow_id: str | None,
    before: str | None,
    project: str | None,
    db: Path | None,
    url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Erase runs' payloads, projection rows and spans; the purge is recorded in the ledger and verify still passes."""
    from flowledger.receiver.store._protocol import PurgeSelection

    if bool(run_ids) == (workflow_id is not None):
        raise click.UsageError("give --run ID (one or more) or --workflow ID, not both and not neither")
    if before is not None and workflow_id is None:
        raise click.UsageError("--before goes with --workflow")
    if project is not None and not run_ids:
        raise click.UsageError("--project goes with --run")
    selection = PurgeSelection(
        run_ids=run_ids,
        workflow_id=workflow_id,
        before=parse_time(before, "--before", before=True),
        project=project,
        by="cli",
    )
    report = _source(db, url, api_key).purge(selection)
    if as_json:
        _print_json(report.as_json())
        return
    if not report.runs:
        echo("nothing to purge: no run matched")
        return
    echo(
        f"purged {len(report.runs)} runs ({report.events} ledger entries lost their payload); "
        f"recorded as ledger entry {report.purge_seq}"
    )


DEFAULT_KEY_NAME: Final = "flowledger.local/ledger"
_EXISTING = click.Path(exists=True, dir_okay=False, path_type=Path)
"""A file the command reads: a missing one is a usage error (exit 2), as click says it."""


@click.command("keygen")
@click.option(
    "-o", "--output", "output", type=OUTPUT_FILE, required=True, help="Write the signing key here, FILE.pub beside it."
)
@click.option("--name", default=DEFAULT_KEY_NAME, show_default=True, help="The key's name (no spaces, no '+').")
@_json_option
@_clean_errors
def keygen_command(output: Path, name: str, as_json: bool) -> None:
    """Write a new Ed25519 signing key to FILE (readable by you only) and its verifier key to FILE.pub."""
    from flowledger._exceptions import KeyFileError
    from flowledger.receiver.cli._checkpoints import write_atomically
    from flowledger.receiver.store._checkpoint import generate_key

    public = output.with_name(output.name + ".pub")
    for path in (output, public):
        if path.exists():
            raise KeyFileError(f"{path} exists already; keygen does not overwrite a key")
    key = generate_key(name)
    write_atomically(output, key.text() + "\n", mode=0o600)
    write_atomically(public, key.verifier().text() + "\n")
    if as_json:  # the verifier key is public; the signing key's text is never printed
        _print_json({"signing_key": str(output), "verifier_key": str(public), "verifier": key.verifier().text()})
        return
    echo(f"signing key: {output} (keep it away from the database)")
    echo(f"verifier key: {public}")


def _refuse_if_broken(report: VerifyReport, size: int) -> None:
    """LedgerIntegrityError unless ``report`` (of ``verify``) is intact and covers the first ``size`` entries."""
    from flowledger._exceptions import LedgerIntegrityError

    if report.ok and report.events >= size:
        return
    where = f"row {report.first_bad_seq}" if report.first_bad_seq is not None else f"{report.events} entries"
    problem = report.problem or f"the tree has {size} entries but the chain {report.events}"
    raise LedgerIntegrityError(
        f"not signing: the ledger does not verify at {where}: {problem} "
        "(see flowledger verify; a checkpoint must not vouch for a broken ledger)"
    )


@click.command("checkpoint")
@click.option("--key", "key", type=_EXISTING, required=True, help="The signing key written by keygen.")
@click.option(
    "-o", "--output", "output", type=OUTPUT_FILE, default=None, help="Write the checkpoint here [default: stdout]."
)
@click.option("--origin", default=None, help="The log's name in the checkpoint [default: the key's name].")
@_db_option(None)
@_url_option
@_key_option
@_json_option
@_clean_errors
def checkpoint_command(
    key: Path,
    output: Path | None,
    origin: str | None,
    db: Path | None,
    url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Write a signed checkpoint of the ledger (C2SP tlog-checkpoint in a signed note): its size and root hash.

    The ledger is verified first, as `flowledger verify` does (the whole chain, tree and blobs; again when it grew
    before its head was read): a ledger that does not verify is not signed (exit 1).
    """
    import time

    from flowledger._wire import format_ts
    from flowledger.receiver.cli._checkpoints import read_signer, write_atomically
    from flowledger.receiver.store._checkpoint import Checkpoint, origin_problem, sign_checkpoint

    problem = None if origin is None else origin_problem(origin)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--origin")
    signer = read_signer(key)
    source = _source(db, url, api_key)
    verified = source.verify(())  # first: a ledger with a row gone has no head to read
    _refuse_if_broken(verified, 0)
    head = source.tree_head()
    if head.size > verified.events:  # appended meanwhile: walk again, now over every entry signed
        _refuse_if_broken(source.verify(()), head.size)
    checkpoint = Checkpoint(
        origin=origin or signer.name, size=head.size, root=head.root, time=format_ts(time.time_ns())
    )
    text = sign_checkpoint(checkpoint, signer)
    if output is not None:
        write_atomically(output, text)
    if as_json:
        _print_json(
            {
                "origin": checkpoint.origin,
                "tree_size": checkpoint.size,
                "root": base64.b64encode(checkpoint.root).decode("ascii"),
                "time": checkpoint.time,
                "output": None if output is None else str(output),
                "checkpoint": text,
            }
        )
    elif output is None:
        click.echo(text, nl=False)  # the checkpoint itself, exact
    else:
        echo(f"checkpoint of {head.size} entries written to {output}", err=True)


@click.command("prove")
@click.argument("run_id", type=RUN_ID)
@click.option(
    "--checkpoint", "checkpoint", type=_EXISTING, required=True, help="The signed checkpoint to prove against."
)
@click.option("-o", "--output", "output", type=OUTPUT_FILE, required=True, help="Write the proof (JSON) here.")
@click.option(
    "--project",
    type=RUN_PROJECT,
    default=None,
    help="The run of this project, when its id is used in several (runs are per project).",
)
@_db_option(None)
@_url_option
@_key_option
@_json_option
@_clean_errors
def prove_command(
    run_id: str,
    checkpoint: Path,
    output: Path,
    project: str | None,
    db: Path | None,
    url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Export one run's ledger entries with inclusion proofs against a signed checkpoint, to check offline."""
    from contextlib import ExitStack

    from flowledger._exceptions import ProofError
    from flowledger.receiver.cli._checkpoints import writing_atomically
    from flowledger.receiver.store._checkpoint import read_unverified
    from flowledger.receiver.store._proof import RunProofWriter

    text = checkpoint.read_text(encoding="utf-8")
    stated = read_unverified(text)
    with ExitStack() as opened:
        writer: RunProofWriter | None = None

        def add(chunk: list[EntryProof]) -> None:  # the file is opened with the first entry, written as they come
            nonlocal writer
            if writer is None:
                writer = RunProofWriter(opened.enter_context(writing_atomically(output)), run_id, text)
            writer.add([(e.seq, e.entry, e.prev_hash, e.payload, e.path) for e in chunk])

        _source(db, url, api_key).each_run_proof(run_id, stated.size, add, project)
        if writer is None:
            of = "" if project is None else f" of project {project!r}"
            raise ProofError(f"run {run_id}{of} has no entry among the {stated.size} the checkpoint covers")
        writer.close()
    entries, purged = writer.entries, writer.entries - writer.payloads
    if as_json:
        _print_json(
            {
                "run_id": run_id,
                "project": project,
                "entries": entries,
                "purged": purged,
                "tree_size": stated.size,
                "output": str(output),
            }
        )
        return
    note = f" ({purged} of them purged: entry only)" if purged else ""
    echo(f"{entries} entries of run {run_id}{note} proven against {stated.size} entries: {output}")


@click.command("verify-proof")
@click.argument("proof", type=_EXISTING)
@click.option("--key", "key", type=_EXISTING, required=True, help="The verifier key (FILE.pub) of the checkpoint.")
@_json_option
@_clean_errors
def verify_proof_command(proof: Path, key: Path, as_json: bool) -> None:
    """Check a run's proof offline, with no database: exit 0 valid, 1 naming what is not."""

    from flowledger._exceptions import ProofError
    from flowledger.receiver.cli._checkpoints import read_verifier
    from flowledger.receiver.store._proof import check_run_proof_file

    verifier = read_verifier(key)
    try:
        try:  # read a piece at a time: one entry held at once, however long the run
            summary = check_run_proof_file(proof, verifier)
        except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
            raise ProofError(f"{proof} is not a JSON proof: {exc}") from None
    except ProofError as exc:
        if as_json:
            _print_json({"valid": False, "problem": str(exc)})
        else:
            echo(f"proof INVALID: {exc}", err=True)
        sys.exit(1)
    if as_json:
        _print_json(
            {
                "valid": True,
                "run_id": summary.run_id,
                "entries": summary.entries,
                "payloads": summary.payloads,
                "tree_size": summary.checkpoint.size,
                "origin": summary.checkpoint.origin,
                "checkpoint_time": summary.checkpoint.time,
            }
        )
        return
    echo(
        f"proof valid: {summary.entries} entries of run {summary.run_id} ({summary.payloads} with their payload) "
        f"are in the ledger {summary.checkpoint.origin} of {summary.checkpoint.size} entries "
        f"signed at {summary.checkpoint.time}"
    )


COMMANDS: Final[list[click.Command]] = [
    purge_command,
    keygen_command,
    checkpoint_command,
    prove_command,
    verify_proof_command,
]
"""The lifecycle commands, for ``flowledger.cli`` to add to its group."""
