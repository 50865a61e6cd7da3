"""checkpoint refuses to sign a ledger verify rejects; verify-proof names a proof's unencodable text in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowledger.receiver.cli._lifecycle import checkpoint_command, prove_command, verify_proof_command
from tests.receiver._support import RunEvents
from tests.receiver.cli.test_checkpoints import _checkpoint, _invoke, ledger
from tests.receiver.store._rewrite import tamper

__all__ = ["ledger"]  # the fixture, shared with the checkpoint tests

Ledger = tuple[Path, Path, list[RunEvents]]


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ("DELETE FROM ledger WHERE seq = 5", "rows 5..5 are missing"),
        ("DELETE FROM payloads WHERE seq = 3", "payload is gone"),
    ],
)
def test_checkpoint_refuses_to_sign_a_ledger_that_does_not_verify(
    ledger: Ledger, tmp_path: Path, edit: str, says: str
) -> None:
    """A removed row or a deleted payload: checkpoint exits 1 naming the problem and writes nothing."""
    db, key, _ = ledger
    tamper(db, edit)
    out = tmp_path / "cp.txt"
    result = _invoke(checkpoint_command, "--key", key, "--db", db, "-o", out)
    assert result.exit_code == 1, result.output
    assert "not signing: the ledger does not verify" in result.output
    assert says in result.output
    assert not out.exists()


def _proof(ledger: Ledger, tmp_path: Path) -> Path:
    db, key, runs = ledger
    cp = _checkpoint(db, key, tmp_path / "cp")
    out = tmp_path / "proof.json"
    assert _invoke(prove_command, runs[0].run_id, "--checkpoint", cp, "-o", out, "--db", db).exit_code == 0
    return out


@pytest.mark.parametrize("field", ["entry", "payload"])
def test_a_lone_surrogate_in_a_proof_is_named_not_a_traceback(ledger: Ledger, tmp_path: Path, field: str) -> None:
    """An entry or payload of "\\ud800" (valid JSON, not UTF-8 text): exit 1 with one line naming the field."""
    path = _proof(ledger, tmp_path)
    document = json.loads(path.read_text())
    document["entries"][0][field] = "\ud800"
    path.write_text(json.dumps(document))  # ensure_ascii: written as the escape
    result = _invoke(verify_proof_command, path, "--key", f"{ledger[1]}.pub")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"entries[0]: the {field} is not text" in result.output


def test_a_proof_listing_a_seq_twice_or_of_another_type_exits_1(ledger: Ledger, tmp_path: Path) -> None:
    """A seq changed to another listed one, or to a list, is refused with exit 1, not a traceback."""
    path = _proof(ledger, tmp_path)
    document = json.loads(path.read_text())
    for seq, says in ((document["entries"][1]["seq"], "lists an entry twice"), ([1], "seq is missing or not")):
        changed = json.loads(json.dumps(document))
        changed["entries"][0]["seq"] = seq
        path.write_text(json.dumps(changed))
        result = _invoke(verify_proof_command, path, "--key", f"{ledger[1]}.pub")
        assert result.exit_code == 1, result.output
        assert says in result.output
