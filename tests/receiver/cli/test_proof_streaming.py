"""A run's proof costs a chunk's memory, not the run's: prove writes it, verify-proof reads it and the receiver
answers it a chunk of entries at a time, in the same document as before (real SQLite files, a real receiver)."""

from __future__ import annotations

import functools
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from flowledger.receiver.cli._lifecycle import checkpoint_command, keygen_command, prove_command, verify_proof_command
from flowledger.receiver.store._proof import run_proof_document
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import LiveReceiver, RunEvents, simple_run
from tests.receiver.cli.test_checkpoints import _append, _invoke


def _long_run(nodes: int) -> RunEvents:
    run = RunEvents().start()
    for number in range(nodes):
        run.node(f"step_{number}", output={"text": "x" * 200, "number": number})
    return run.finish()


def _peak(work: Callable[[], Result]) -> int:
    """The most memory Python held while ``work`` ran (tracemalloc), in bytes."""
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    return peak


def _proven(tmp_path: Path, nodes: int) -> tuple[Path, Path, Path, RunEvents]:
    db = tmp_path / f"ledger-{nodes}.db"
    run = _long_run(nodes)
    _append(db, simple_run(), run, simple_run())
    key = tmp_path / f"key-{nodes}"
    assert _invoke(keygen_command, "-o", key).exit_code == 0
    checkpoint = tmp_path / f"cp-{nodes}.txt"
    assert _invoke(checkpoint_command, "--key", key, "--db", db, "-o", checkpoint).exit_code == 0
    return db, key, checkpoint, run


@pytest.mark.slow
def test_prove_and_verify_proof_hold_a_chunk_not_the_run(tmp_path: Path) -> None:
    """Proving and checking a run four times as long takes about the same memory (it grew with the run: ~4x)."""
    peaks: dict[int, tuple[int, int]] = {}
    for nodes in (400, 1600):
        db, key, checkpoint, run = _proven(tmp_path, nodes)
        out = tmp_path / f"run-{nodes}.proof.json"
        prove: list[str | Path] = [run.run_id, "--checkpoint", checkpoint, "-o", out, "--db", db]
        check: list[str | Path] = [out, "--key", f"{key}.pub", "--json"]
        peaks[nodes] = (
            _peak(functools.partial(_invoke, prove_command, *prove)),
            _peak(functools.partial(_invoke, verify_proof_command, *check)),
        )
        assert json.loads(_invoke(verify_proof_command, *check).output)["entries"] == len(run.events)
    (prove_small, check_small), (prove_large, check_large) = peaks[400], peaks[1600]
    assert prove_large < 1.6 * prove_small, peaks
    assert check_large < 1.6 * check_small, peaks


def test_a_streamed_proof_is_the_document_prove_always_wrote(tmp_path: Path) -> None:
    """The file prove writes a chunk at a time is, byte for byte, json.dumps of the whole document."""
    db, _, checkpoint, run = _proven(tmp_path, 300)  # 602 entries: three chunks
    out = tmp_path / "run.proof.json"
    result = _invoke(prove_command, run.run_id, "--checkpoint", checkpoint, "-o", out, "--db", db, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["entries"] == len(run.events)
    text = checkpoint.read_text(encoding="utf-8")
    size = int(text.splitlines()[1])

    async def proofs() -> list[tuple[int, bytes, bytes, bytes | None, list[bytes]]]:
        store = SqliteStore(db, readonly=True)
        await store.open()
        try:
            return [(p.seq, p.entry, p.prev_hash, p.payload, p.path) for p in await store.run_proof(run.run_id, size)]
        finally:
            await store.close()

    import asyncio

    whole = json.dumps(run_proof_document(run.run_id, text, asyncio.run(proofs())), ensure_ascii=False, indent=1)
    assert out.read_text(encoding="utf-8") == whole + "\n"


def test_a_proof_in_another_key_order_or_naming_a_key_twice(tmp_path: Path) -> None:
    """A proof whose entries come before its header is still checked (read whole); one naming a key twice is
    refused; a proof cut short is not JSON."""
    db, key, checkpoint, run = _proven(tmp_path, 3)
    out = tmp_path / "run.proof.json"
    assert _invoke(prove_command, run.run_id, "--checkpoint", checkpoint, "-o", out, "--db", db).exit_code == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    sorted_keys = tmp_path / "sorted.json"
    sorted_keys.write_text(json.dumps(document, sort_keys=True), encoding="utf-8")
    assert _invoke(verify_proof_command, sorted_keys, "--key", f"{key}.pub").exit_code == 0
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(document)[:-1] + ', "run_id": "other"}', encoding="utf-8")
    result = _invoke(verify_proof_command, twice, "--key", f"{key}.pub")
    assert (result.exit_code, "names run_id twice" in result.output) == (1, True), result.output
    # Entries first (read whole), a forged list ahead of the real one: refused as well, not the last list taken.
    forged = [dict(entry, seq=entry["seq"] + 1) for entry in document["entries"]]
    ahead = tmp_path / "ahead.json"
    ahead.write_text('{"entries": ' + json.dumps(forged) + ", " + json.dumps(document)[1:], encoding="utf-8")
    result = _invoke(verify_proof_command, ahead, "--key", f"{key}.pub")
    assert (result.exit_code, "names entries twice" in result.output) == (1, True), result.output
    cut = tmp_path / "cut.json"
    cut.write_text(out.read_text(encoding="utf-8")[:-40], encoding="utf-8")
    result = _invoke(verify_proof_command, cut, "--key", f"{key}.pub")
    assert (result.exit_code, "is not a JSON proof" in result.output) == (1, True), result.output


def test_the_receiver_streams_a_proof_and_prove_reads_it_as_it_comes(live: LiveReceiver, tmp_path: Path) -> None:
    """GET /api/tree/runs/{id} answers chunked, without a length (it used to build the whole body first), the same
    JSON as a whole answer; prove --url writes the same file as prove --db."""
    run = _long_run(300)
    assert live.post([*simple_run().events, *run.events]).json()["rejected"] == []
    key = tmp_path / "key"
    assert _invoke(keygen_command, "-o", key).exit_code == 0
    checkpoint = tmp_path / "cp.txt"
    assert _invoke(checkpoint_command, "--key", key, "--url", live.url, "-o", checkpoint).exit_code == 0
    size = int(checkpoint.read_text(encoding="utf-8").splitlines()[1])
    response = httpx.get(f"{live.url}/api/tree/runs/{run.run_id}", params={"size": size}, timeout=30)
    assert response.status_code == 200
    assert response.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.headers
    entries = response.json()["entries"]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert len(entries) == len(run.events)
    assert response.content == json.dumps({"entries": entries}, ensure_ascii=False, separators=(",", ":")).encode()
    assert httpx.get(f"{live.url}/api/tree/runs/nope", params={"size": size}, timeout=30).status_code == 404
    assert httpx.get(f"{live.url}/api/tree/runs/{run.run_id}", params={"size": size + 99}).status_code == 404
    over_url, over_db = tmp_path / "url.proof.json", tmp_path / "db.proof.json"
    result = _invoke(prove_command, run.run_id, "--checkpoint", checkpoint, "-o", over_url, "--url", live.url)
    assert result.exit_code == 0, result.output
    result = _invoke(prove_command, run.run_id, "--checkpoint", checkpoint, "-o", over_db, "--db", live.db_path)
    assert result.exit_code == 0, result.output
    assert over_url.read_bytes() == over_db.read_bytes()
    assert _invoke(verify_proof_command, over_url, "--key", f"{key}.pub").exit_code == 0
    missing = tmp_path / "missing.proof.json"
    result = _invoke(prove_command, "nope", "--checkpoint", checkpoint, "-o", missing, "--url", live.url)
    assert (result.exit_code, missing.exists()) == (1, False), result.output
