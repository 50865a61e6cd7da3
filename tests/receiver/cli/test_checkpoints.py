"""keygen, checkpoint, verify --checkpoint FILE --key, prove and verify-proof on real files, and what they catch."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from pymerkle import InmemoryTree

from flowledger.receiver.cli._commands import verify_command
from flowledger.receiver.cli._lifecycle import (
    checkpoint_command,
    keygen_command,
    prove_command,
    purge_command,
    verify_proof_command,
)
from flowledger.receiver.store._entry import ENTRY_COLUMNS, entry_of
from flowledger.receiver.store._merkle import leaf_hash
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run
from tests.receiver.store._rewrite import as_format2, rewrite_history, tamper
from tests.receiver.store.conformance.conftest import prepared


def _append(path: Path, *runs: RunEvents) -> None:
    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.append(prepared([e for run in runs for e in run.events]))
        finally:
            await store.close()

    asyncio.run(main())


def _invoke(command: click.Command, *args: str | Path) -> Result:
    return CliRunner().invoke(command, [str(a) for a in args])


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Path, Path, list[RunEvents]]:
    """A database of 6 runs (33 entries) and a key pair."""
    db = tmp_path / "ledger.db"
    runs = [typical_run(), *(simple_run() for _ in range(5))]
    _append(db, *runs)
    key = tmp_path / "keys" / "signing"
    key.parent.mkdir()
    result = _invoke(keygen_command, "-o", key)
    assert result.exit_code == 0, result.output
    return db, key, runs


def _checkpoint(db: Path, key: Path, out: Path) -> Path:
    result = _invoke(checkpoint_command, "--key", key, "--db", db, "-o", out)
    assert result.exit_code == 0, result.output
    return out


def _verify(db: Path, checkpoint: Path, key: Path) -> Result:
    return _invoke(verify_command, "--db", db, "--checkpoint", checkpoint, "--key", f"{key}.pub")


def test_keygen_writes_a_private_key_and_its_public_key(ledger: tuple[Path, Path, list[RunEvents]]) -> None:
    """FILE is readable by its owner only and FILE.pub holds the verifier key; keygen never overwrites."""
    _, key, _ = ledger
    assert key.read_text().startswith("PRIVATE+KEY+flowledger.local/ledger+")
    assert key.stat().st_mode & 0o777 == 0o600
    assert Path(f"{key}.pub").read_text().startswith("flowledger.local/ledger+")
    again = _invoke(keygen_command, "-o", key)
    assert again.exit_code == 2  # the target exists: a usage error
    assert "exists already" in again.output


def test_a_checkpoint_is_a_signed_note(ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path) -> None:
    """The checkpoint has origin, size, base64 root, time, a blank line and an em-dash signature line."""
    db, key, runs = ledger
    text = _checkpoint(db, key, tmp_path / "cp").read_text()
    lines = text.split("\n")
    assert lines[0] == "flowledger.local/ledger"
    assert lines[1] == str(sum(len(r.events) for r in runs))
    assert lines[3].startswith("time ")
    assert lines[4] == ""
    assert lines[5].startswith("\u2014 flowledger.local/ledger ")
    stdout = _invoke(checkpoint_command, "--key", key, "--db", db)
    assert stdout.exit_code == 0
    assert stdout.output.split("\n")[:3] == lines[:3]


def test_the_ledger_extends_its_checkpoint_as_it_grows(
    ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path
) -> None:
    """verify --checkpoint passes on the same ledger, after more events and after a purge."""
    db, key, runs = ledger
    cp = _checkpoint(db, key, tmp_path / "cp")
    assert _verify(db, cp, key).exit_code == 0
    _append(db, *(simple_run() for _ in range(10)))
    assert _invoke(purge_command, "--run", runs[0].run_id, "--db", db).exit_code == 0
    result = _verify(db, cp, key)
    assert result.exit_code == 0, result.output


def test_a_cut_tail_is_caught(ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path) -> None:
    """Entries cut from the end (chain and tree trimmed to match, so verify alone passes) break the checkpoint."""
    db, key, _ = ledger
    cp = _checkpoint(db, key, tmp_path / "cp")
    tamper(
        db,
        "DELETE FROM ledger WHERE seq > 20",
        "DELETE FROM payloads WHERE seq > 20",
        "DELETE FROM merkle_nodes WHERE ((idx + 1) << level) > 20",
    )
    assert _invoke(verify_command, "--db", db).exit_code == 0
    result = _verify(db, cp, key)
    assert result.exit_code == 1
    assert "cut from its end" in result.output


def test_a_rollback_is_caught(ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path) -> None:
    """An older copy of the file put back is caught, and so is one that was written to again since."""
    db, key, _ = ledger
    old = tmp_path / "old.db"
    shutil.copy(db, old)
    _append(db, *(simple_run() for _ in range(3)))
    cp = _checkpoint(db, key, tmp_path / "cp")
    shutil.copy(old, db)
    result = _verify(db, cp, key)
    assert result.exit_code == 1
    assert "rolled back" in result.output
    _append(db, *(simple_run() for _ in range(5)))  # grown past the checkpoint with other events
    result = _verify(db, cp, key)
    assert result.exit_code == 1
    assert "rewritten" in result.output


def test_a_rewrite_is_caught(ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path) -> None:
    """An entry edited with the chain and tree recomputed passes verify alone, not the checkpoint."""
    db, key, _ = ledger
    cp = _checkpoint(db, key, tmp_path / "cp")
    _append(db, simple_run())
    rewrite_history(db, 7, b'"producer_seq":', b'"producer_seq":1')
    assert _invoke(verify_command, "--db", db).exit_code == 0
    result = _verify(db, cp, key)
    assert result.exit_code == 1
    assert "rewritten" in result.output
    assert "consistency proof" in result.output


def test_a_checkpoint_with_a_wrong_key_or_edited_text_fails(
    ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path
) -> None:
    """Another key's verifier, or a changed size line, fails the signature: exit 1 saying so."""
    db, key, _ = ledger
    cp = _checkpoint(db, key, tmp_path / "cp")
    other = tmp_path / "other"
    assert _invoke(keygen_command, "-o", other, "--name", "other").exit_code == 0
    result = _verify(db, cp, other)
    assert result.exit_code == 1
    assert "not signed by the key other" in result.output
    lines = cp.read_text().split("\n")
    lines[1] = str(int(lines[1]) - 1)
    cp.write_text("\n".join(lines))
    result = _verify(db, cp, key)
    assert result.exit_code == 1
    assert "not signed" in result.output


def test_checkpoint_usage_errors(ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path) -> None:
    """--key without --checkpoint, and a checkpoint file without --key, are usage errors (exit 2)."""
    db, key, _ = ledger
    assert _invoke(verify_command, "--db", db, "--key", f"{key}.pub").exit_code == 2
    cp = _checkpoint(db, key, tmp_path / "cp")
    assert _invoke(verify_command, "--db", db, "--checkpoint", cp).exit_code == 2
    two_lines = _invoke(checkpoint_command, "--key", key, "--db", db, "--origin", "x\n99\nabc", "-o", tmp_path / "o")
    assert two_lines.exit_code == 2  # it wrote a signed checkpoint that no verifier could read
    assert "the origin holds '\\n' at character 2" in two_lines.output
    assert not (tmp_path / "o").exists()
    secret = key.read_text().strip()
    swapped = _invoke(verify_command, "--db", db, "--checkpoint", cp, "--key", key)  # the signing key, not FILE.pub
    assert swapped.exit_code == 2
    assert f"{key} is the signing key, which stays private: give its verifier key, {key}.pub" in swapped.output
    assert secret not in swapped.output
    assert secret.split("+", 4)[-1] not in swapped.output  # PRIVATE+KEY+NAME+ID+DATA: the key's data may hold "+"
    nowhere = _invoke(checkpoint_command, "--key", key, "--db", db, "-o", tmp_path / "no" / "cp")
    assert nowhere.exit_code != 0
    assert str(tmp_path / "no" / "cp") in nowhere.output
    assert ".partial" not in nowhere.output


def test_a_signing_key_others_may_read_is_warned_of_and_a_bad_one_named_once(
    ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path
) -> None:
    """A signing key readable by others still signs, with one warning saying how to protect it; a key file that is
    not text names its path once."""
    db, key, _ = ledger
    quiet = _invoke(checkpoint_command, "--key", key, "--db", db, "-o", tmp_path / "cp1")
    assert quiet.exit_code == 0, quiet.output
    assert "warning" not in quiet.output
    key.chmod(0o644)
    loud = _invoke(checkpoint_command, "--key", key, "--db", db, "-o", tmp_path / "cp2")
    assert loud.exit_code == 0, loud.output
    assert f"warning: the signing key {key} may be read by others (mode 644); keygen writes it 600" in loud.output
    assert key.read_text().strip() not in loud.output
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    bad = _invoke(checkpoint_command, "--key", binary, "--db", db, "-o", tmp_path / "cp3")
    assert bad.exit_code != 0
    assert f"{binary} is not a signing key (not UTF-8 text)" in bad.output
    assert bad.output.count(str(binary)) == 1


def _prove(db: Path, key: Path, run_id: str, tmp_path: Path) -> Path:
    cp = _checkpoint(db, key, tmp_path / "cp")
    out = tmp_path / "proof.json"
    result = _invoke(prove_command, run_id, "--checkpoint", cp, "-o", out, "--db", db)
    assert result.exit_code == 0, result.output
    return out


def test_a_run_proof_verifies_offline_and_matches_pymerkle(
    ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path
) -> None:
    """prove exports a run's entries; verify-proof accepts them with the key alone; pymerkle agrees on every path."""
    db, key, runs = ledger
    run = runs[0]
    proof_path = _prove(db, key, run.run_id, tmp_path)
    db.unlink()  # offline: no database
    result = _invoke(verify_proof_command, proof_path, "--key", f"{key}.pub", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["valid"], summary["entries"], summary["payloads"]) == (True, len(run.events), len(run.events))
    proof = json.loads(proof_path.read_text())
    tree_size = int(proof["checkpoint"].split("\n")[1])
    assert tree_size == sum(len(r.events) for r in runs)


def test_pymerkle_rebuilds_the_same_tree_from_the_database(
    ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path
) -> None:
    """pymerkle fed the ledger's entries has our root, and its inclusion paths are the ones in our proof."""
    db, key, runs = ledger
    proof = json.loads(_prove(db, key, runs[1].run_id, tmp_path).read_text())
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')}, prev_hash FROM ledger ORDER BY seq").fetchall()
    entries = [bytes(row[10]) + entry_of(row[:10]) for row in rows]  # a format-3 leaf's data: prev_hash || entry
    reference = InmemoryTree()
    for entry in entries:
        reference.append_entry(entry)
    import base64

    assert base64.b64encode(reference.get_root(len(entries))).decode() == proof["checkpoint"].split("\n")[2]
    for item in proof["entries"]:
        theirs = reference.prove_inclusion(item["seq"], len(entries)).serialize()["path"]
        assert theirs[0] == leaf_hash(bytes.fromhex(item["prev_hash"]) + item["entry"].encode()).hex()
        assert theirs[1:] == item["inclusion_path"]


@pytest.mark.parametrize(
    "change",
    ["payload", "entry", "prev_hash", "no_prev_hash", "path", "seq", "checkpoint", "run_id", "drop_all"],
)
def test_a_tampered_proof_is_rejected(ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path, change: str) -> None:
    """Any change to a proof (payload, entry, the hash before an entry, path, position, checkpoint, run) makes
    verify-proof exit 1."""
    db, key, runs = ledger
    path = _prove(db, key, runs[0].run_id, tmp_path)
    proof = json.loads(path.read_text())
    item = proof["entries"][2]
    if change == "payload":
        item["payload"] = item["payload"].replace("fetch", "FETCH")
    elif change == "entry":
        item["entry"] = item["entry"].replace('"producer_seq":', '"producer_seq":1')
    elif change == "prev_hash":
        item["prev_hash"] = "00" * 32
    elif change == "no_prev_hash":
        del item["prev_hash"]
    elif change == "path":
        item["inclusion_path"][0] = "00" * 32
    elif change == "seq":
        item["seq"] += 1
    elif change == "checkpoint":
        proof["checkpoint"] = proof["checkpoint"].replace("time ", "time 1")
    elif change == "run_id":
        proof["run_id"] = runs[1].run_id
    else:
        proof["entries"] = []
    path.write_text(json.dumps(proof))
    result = _invoke(verify_proof_command, path, "--key", f"{key}.pub")
    assert result.exit_code == 1
    assert "proof INVALID" in result.output


def test_a_proof_of_format2_entries_needs_no_prev_hash(tmp_path: Path) -> None:
    """A ledger begun before format 3 proves its old entries and its new ones; a proof of format-2 entries made
    before proofs named the hash before each entry still verifies, and a format-3 entry without it is refused."""
    db = tmp_path / "ledger.db"
    old, new = typical_run(), simple_run()
    _append(db, old)
    as_format2(db)
    _append(db, new)
    key = tmp_path / "signing"
    assert _invoke(keygen_command, "-o", key).exit_code == 0
    assert _invoke(verify_command, "--db", db).exit_code == 0
    for run, v in ((old, 2), (new, 3)):
        path = _prove(db, key, run.run_id, tmp_path)
        proof = json.loads(path.read_text())
        assert {json.loads(item["entry"])["v"] for item in proof["entries"]} == {v}
        assert _invoke(verify_proof_command, path, "--key", f"{key}.pub").exit_code == 0
        for item in proof["entries"]:
            del item["prev_hash"]
        path.write_text(json.dumps(proof))
        result = _invoke(verify_proof_command, path, "--key", f"{key}.pub")
        if v == 2:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 1
            assert "prev_hash is missing (a format-3 entry's leaf is prev_hash || entry)" in result.output


def test_a_purged_run_is_still_provable(ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path) -> None:
    """After a purge the run's entries are still proven, without payloads."""
    db, key, runs = ledger
    assert _invoke(purge_command, "--run", runs[0].run_id, "--db", db).exit_code == 0
    path = _prove(db, key, runs[0].run_id, tmp_path)
    result = _invoke(verify_proof_command, path, "--key", f"{key}.pub", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["payloads"] == 0


def test_verify_proof_needs_no_database_stack(ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path) -> None:
    """`flowledger verify-proof` as a process: exit 0, and neither the database driver nor the server is imported."""
    db, key, runs = ledger
    path = _prove(db, key, runs[0].run_id, tmp_path)
    code = (
        "import sys\n"
        "from flowledger.cli import main\n"
        "try:\n"
        f"    main(['verify-proof', {str(path)!r}, '--key', {str(key) + '.pub'!r}])\n"
        "except SystemExit as exit:\n"
        "    heavy = sorted(m for m in ('aiosqlite', 'starlette', 'uvicorn') if m in sys.modules)\n"
        "    print('loaded:', heavy)\n"
        "    raise\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "proof valid" in done.stdout
    assert "loaded: []" in done.stdout


def test_checkpoints_and_proofs_over_url(live: LiveReceiver, tmp_path: Path) -> None:
    """checkpoint, verify --checkpoint and prove work against a running receiver; the key never leaves the client."""
    runs = [typical_run(), *(simple_run() for _ in range(4))]
    assert live.post([e for run in runs for e in run.events]).json()["rejected"] == []
    key = tmp_path / "k"
    assert _invoke(keygen_command, "-o", key).exit_code == 0
    cp = tmp_path / "cp"
    result = _invoke(checkpoint_command, "--key", key, "--url", live.url, "-o", cp)
    assert result.exit_code == 0, result.output
    assert live.post(simple_run().events).json()["accepted"] == 4
    verdict = _invoke(verify_command, "--url", live.url, "--checkpoint", cp, "--key", f"{key}.pub")
    assert verdict.exit_code == 0, verdict.output
    proof = tmp_path / "proof.json"
    result = _invoke(prove_command, runs[0].run_id, "--checkpoint", cp, "-o", proof, "--url", live.url)
    assert result.exit_code == 0, result.output
    assert _invoke(verify_proof_command, proof, "--key", f"{key}.pub").exit_code == 0
    missing = _invoke(prove_command, "no-such-run", "--checkpoint", cp, "-o", proof, "--url", live.url)
    assert missing.exit_code == 1
    rewrite_history(live.db_path, 3, b'"producer_seq":', b'"producer_seq":1')
    broken = _invoke(verify_command, "--url", live.url, "--checkpoint", cp, "--key", f"{key}.pub")
    assert broken.exit_code == 1
    assert "rewritten" in broken.output


def test_verify_reads_the_receiver_checkpoint_signed_and_says_it_extends_it(
    live: LiveReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $FLOWLEDGER_ENDPOINT and neither --db nor --url, verify checks the ledger checkpoint signed (not a
    ./flowledger.db, which it used to read, or fail on), and says which signed checkpoints the ledger extends."""
    assert live.post(simple_run().events).json()["accepted"] == 4
    key, cp = tmp_path / "k", tmp_path / "cp"
    assert _invoke(keygen_command, "-o", key).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("FLOWLEDGER_ENDPOINT", live.url)
    assert _invoke(checkpoint_command, "--key", key, "-o", cp).exit_code == 0
    verdict = _invoke(verify_command, "--checkpoint", cp, "--key", f"{key}.pub")
    assert verdict.exit_code == 0, verdict.output
    assert verdict.output.splitlines()[1:] == [f"extends the signed checkpoint {cp} (4 entries)"]
    as_json = _invoke(verify_command, "--checkpoint", cp, "--key", f"{key}.pub", "--json")
    assert json.loads(as_json.output)["signed_checkpoints_extended"] == {str(cp): 4}
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("how", ["db", "url"])
def test_prove_project_names_the_run_of_an_id_two_projects_use(live: LiveReceiver, tmp_path: Path, how: str) -> None:
    """Keys off, one run id in two projects: prove without --project stops naming the choice and writes nothing;
    with --project the proof holds that project's entries only, and verifies."""
    run = typical_run(project="alpha")
    other = [{**event, "project": "beta"} for event in simple_run().events]
    for event in other:
        event["run_id"] = run.run_id
    assert live.post([*run.events, *other]).json()["rejected"] == []
    key, cp, proof = tmp_path / "k", tmp_path / "cp", tmp_path / "proof.json"
    assert _invoke(keygen_command, "-o", key).exit_code == 0
    where = ["--db", live.db_path] if how == "db" else ["--url", live.url]
    assert _invoke(checkpoint_command, "--key", key, "-o", cp, *where).exit_code == 0
    refused = _invoke(prove_command, run.run_id, "--checkpoint", cp, "-o", proof, *where)
    assert refused.exit_code == 2  # an id several projects use: name one (a usage error)
    assert "more than one project" in refused.output
    assert not proof.exists()
    for project, count in (("alpha", len(run.events)), ("beta", len(other))):
        result = _invoke(prove_command, run.run_id, "--project", project, "--checkpoint", cp, "-o", proof, *where)
        assert result.exit_code == 0, result.output
        assert f"{count} entries of run {run.run_id}" in result.output
        entries = json.loads(proof.read_text(encoding="utf-8"))["entries"]
        assert {json.loads(e["entry"])["project"] for e in entries} == {project}
        assert _invoke(verify_proof_command, proof, "--key", f"{key}.pub").exit_code == 0
    unknown = _invoke(prove_command, run.run_id, "--project", "gamma", "--checkpoint", cp, "-o", proof, *where)
    assert unknown.exit_code == 1
    assert "of project 'gamma' has no entry" in unknown.output


def test_a_file_named_on_the_command_line_that_is_not_there_is_a_usage_error(
    ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path
) -> None:
    """A missing key, checkpoint, proof or database is exit 2 with one line naming it, as the contract has usage
    errors; a proof that does not hold is still exit 1 (see the tests above)."""
    db, key, runs = ledger
    checkpoint = _checkpoint(db, key, tmp_path / "cp.txt")
    proof = tmp_path / "proof.json"
    assert _invoke(prove_command, runs[0].run_id, "--checkpoint", checkpoint, "--db", db, "-o", proof).exit_code == 0
    gone = tmp_path / "gone"
    cases: dict[str, tuple[click.Command, *tuple[str | Path, ...]]] = {
        "checkpoint --key": (checkpoint_command, "--key", gone, "--db", db),
        "checkpoint --db": (checkpoint_command, "--key", key, "--db", gone),
        "prove --checkpoint": (prove_command, runs[0].run_id, "--checkpoint", gone, "--db", db, "-o", proof),
        "verify-proof PROOF": (verify_proof_command, gone, "--key", f"{key}.pub"),
        "verify-proof --key": (verify_proof_command, proof, "--key", gone),
        "verify --checkpoint": (verify_command, "--checkpoint", gone, "--key", f"{key}.pub", "--db", db),
        "verify --key": (verify_command, "--checkpoint", checkpoint, "--key", gone, "--db", db),
        "verify --db": (verify_command, "--db", gone),
    }
    for case, (command, *args) in cases.items():
        result = _invoke(command, *args)
        assert result.exit_code == 2, (case, result.output)
        assert str(gone) in result.output or "gone" in result.output, (case, result.output)
        assert "Traceback" not in result.output, case


def test_keygen_checkpoint_and_prove_print_json_for_scripts(
    ledger: tuple[Path, Path, list[RunEvents]], tmp_path: Path
) -> None:
    """--json on keygen (never the signing key's text), checkpoint (the head and the signed text) and prove."""
    db, key, runs = ledger
    made = _invoke(keygen_command, "-o", tmp_path / "second", "--json")
    assert made.exit_code == 0, made.output
    keys = json.loads(made.output)
    assert keys["verifier"] == Path(keys["verifier_key"]).read_text().strip()
    assert "PRIVATE" not in made.output
    written = _invoke(checkpoint_command, "--key", key, "--db", db, "-o", tmp_path / "cp.txt", "--json")
    assert written.exit_code == 0, written.output
    head = json.loads(written.output)
    assert head["tree_size"] == sum(len(run.events) for run in runs)
    assert head["checkpoint"] == (tmp_path / "cp.txt").read_text()
    assert head["output"] == str(tmp_path / "cp.txt")
    proven = _invoke(
        prove_command, runs[0].run_id, "--checkpoint", tmp_path / "cp.txt", "--db", db, "-o", tmp_path / "p.json",
        "--json",
    )  # fmt: skip
    assert proven.exit_code == 0, proven.output
    summary = json.loads(proven.output)
    assert (summary["run_id"], summary["entries"], summary["purged"]) == (runs[0].run_id, len(runs[0].events), 0)
    assert _invoke(verify_proof_command, tmp_path / "p.json", "--key", f"{key}.pub").exit_code == 0
