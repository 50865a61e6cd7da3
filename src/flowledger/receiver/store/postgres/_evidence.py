"""What a resume needs from the ledger, on PostgreSQL: each node's complete output, checked against the ledger.

The same answer and the same three checks as :mod:`.._evidence` (blob
against the hash its payload states, payload against its entry, entry in
the hash chain and in the Merkle tree under the head), read on one
repeatable-read snapshot. The inclusion proofs ask for their subtree hashes
first and read them in a few queries (:func:`._tree.pg_inclusion_path`); a
blob is read before the shared :func:`.._evidence.reusable_payload` checks it.
Every row read is checked to be the record the projection says it is
(:func:`.._evidence.owner_problem`), and simulated effects are marked, as there.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg

from flowledger._wire import NODE_SHA256_ATTRIBUTE, NodeStatus, OutputCapture
from flowledger.receiver.store._entry import entry_hashes, parse_entry
from flowledger.receiver.store._evidence import (
    MAX_CHAIN_RUNS,
    NODE_ROWS_SQL,
    Owner,
    evidence_of,
    finish_node,
    last_attempts,
    merged_attributes,
    node_entry,
    node_owners,
    owner_problem,
    reusable_payload,
    run_owner,
)
from flowledger.receiver.store._merkle import STORED_MIN_LEVEL, BlockFolds, verify_inclusion
from flowledger.receiver.store._namespace import one_namespace
from flowledger.receiver.store._protocol import TreeHead
from flowledger.receiver.store.postgres._namespace import PG_NAMESPACES_SQL, pg_run_scope
from flowledger.receiver.store.postgres._tree import load_frontier, pg_inclusion_path

__all__ = ["pg_resume_chain", "pg_resume_evidence"]


class _PgChecker:
    """Checks ledger rows against the tree head and the chain; blobs are read (``fetch_blob``) before checked."""

    def __init__(self, conn: asyncpg.Connection, head: TreeHead) -> None:
        self.conn = conn
        self.head = head
        self.tampered = False
        """Set by the last check that failed because something was changed (not merely missing)."""
        self._blobs: dict[str, str | None] = {}
        self._folds = BlockFolds(STORED_MIN_LEVEL)

    def _tampered(self, problem: str) -> tuple[None, str]:
        self.tampered = True
        return None, problem

    async def payload(self, seq: int | None, owner: Owner) -> tuple[dict[str, Any] | None, str | None]:
        """The verified payload body of ledger row ``seq``, the ``owner``'s record, or a problem (a tampering one noted
        in ``tampered``)."""
        if seq is None:
            return None, "it has no ledger entry"
        row = await self.conn.fetchrow(
            "SELECT l.entry, l.prev_hash, l.hash, l.payload_hash, convert_to(p.body, 'UTF8'), "
            "(SELECT n.prev_hash FROM ledger n WHERE n.seq = l.seq + 1) "
            "FROM ledger l LEFT JOIN payloads p ON p.seq = l.seq WHERE l.seq = $1",
            seq,
        )
        if row is None:
            return self._tampered(f"ledger entry {seq} is missing")
        entry, prev_hash, own_hash, payload_digest = (bytes(row[i]) for i in range(4))
        body, next_prev = row[4], row[5]
        chain, leaf = entry_hashes(prev_hash, entry)
        if chain != own_hash or (next_prev is not None and bytes(next_prev) != own_hash):
            return self._tampered(f"ledger entry {seq} is not in the hash chain (the entry or its hashes were changed)")
        path = await pg_inclusion_path(self.conn, seq - 1, self.head.size, self._folds)
        if not verify_inclusion(leaf, seq - 1, self.head.size, path, self.head.root):
            return self._tampered(f"ledger entry {seq} is not in the ledger's Merkle tree (its inclusion proof fails)")
        try:
            fields = parse_entry(entry)
        except ValueError as exc:
            return self._tampered(f"ledger entry {seq}: {exc}")
        if body is None:
            return None, f"the payload of ledger entry {seq} was purged"
        body = bytes(body)
        digest = hashlib.sha256(body).digest()
        if digest != payload_digest or digest.hex() != fields.get("payload_sha256"):
            return self._tampered(
                f"the payload of ledger entry {seq} does not match the hash its entry commits to (changed)"
            )
        parsed: dict[str, Any] = json.loads(body)
        not_its = owner_problem(seq, fields, parsed, owner)
        if not_its is not None:
            return self._tampered(not_its)
        return parsed, None

    async def fetch_blob(self, data: dict[str, Any], prefix: str) -> None:
        """Read the blob a payload captured in full names (``{prefix}_sha256``), for :meth:`blob` to check."""
        digest = data.get(f"{prefix}_sha256")
        if data.get(f"{prefix}_capture") == OutputCapture.FULL.value and isinstance(digest, str):
            self._blobs[digest] = await self.conn.fetchval("SELECT body FROM blobs WHERE sha256 = $1", digest)

    def blob(self, digest: str) -> tuple[str | None, str | None]:
        """The blob stored under ``digest`` (read by :meth:`fetch_blob`), checked to hash to it, or a problem."""
        text = self._blobs.get(digest)
        if text is None:
            return None, "its complete output is not stored (purged, or sent by an older receiver)"
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
            self.tampered = True
            return None, "its stored output does not match the hash the ledger recorded (the blob was changed)"
        return text, None

    async def full(self, body: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
        data = (body or {}).get("data") or {}
        await self.fetch_blob(data, prefix)
        return reusable_payload(data, prefix, self)


async def pg_resume_evidence(conn: asyncpg.Connection, run_id: str, project: str | None) -> dict[str, Any] | None:
    """The run's evidence for a resume (see :mod:`.._evidence`); None for an unknown or another project's run."""
    space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
    if space is None:
        return None
    run = await conn.fetchrow(
        "SELECT run_id, project, workflow_id, status, definition_sha256, resumed_from, input_seq "
        f"FROM runs WHERE {pg_run_scope(1)}",
        run_id,
        space,
    )
    if run is None:
        return None
    size = int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger"))
    checker = _PgChecker(conn, TreeHead(size, (await load_frontier(conn, size)).root()))
    started, problem = await checker.payload(run[6], run_owner(run_id, space))
    started_data = (started or {}).get("data") or {}
    trigger = await checker.full(started, "trigger_data")
    if problem is not None:
        trigger.update(text=None, problem=problem)
    trigger["dry_run"] = bool(started_data.get("dry_run"))
    input_tampered = checker.tampered
    rows = await conn.fetch(
        NODE_ROWS_SQL + f"WHERE {pg_run_scope(1)} "
        "ORDER BY started_at NULLS FIRST, attempt NULLS FIRST, item NULLS FIRST, span_id",
        run_id,
        space,
    )
    last, mapped = last_attempts(rows)
    nodes = []
    for node_id, row in last.items():
        checker.tampered = False
        entry = node_entry(node_id, row[1], row[3], row[4])
        if node_id in mapped:
            entry["problem"] = "it is a mapped node (mapped nodes are run again)"
        elif row[1] == NodeStatus.SUCCEEDED.value:
            began, ended = node_owners(run_id, space, row)
            finished, problem = await checker.payload(row[6], ended)
            started_body, started_problem = (
                await checker.payload(row[5], began) if row[5] is not None and row[5] != row[6] else (None, None)
            )
            if problem is None and checker.tampered:  # its input row is not its own
                problem = started_problem
            entry["node_sha256"] = merged_attributes(started_body, finished).get(NODE_SHA256_ATTRIBUTE)
            finish_node(entry, finished, trigger["dry_run"])
            if problem is not None:
                entry["problem"] = problem
            else:
                full = await checker.full(finished, "output")
                entry.update(
                    output_capture=full["capture"],
                    output_sha256=full["sha256"],
                    output=full["text"],
                    problem=full["problem"],
                )
        entry["tampered"] = checker.tampered
        if checker.tampered and entry["problem"] is None:
            entry["problem"] = "a ledger entry of its attempt does not verify (changed)"
        nodes.append(entry)
    return evidence_of(run, trigger, input_tampered, checker.head, nodes)


async def pg_resume_chain(conn: asyncpg.Connection, run_id: str, project: str | None) -> list[dict[str, Any]] | None:
    """The original run of ``run_id``'s chain, then every resume of it, each after the run it resumes.

    As :func:`.._evidence.resume_chain`: resumes of one run in start order, at most MAX_CHAIN_RUNS each side.
    """

    space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
    if space is None:
        return None

    async def one(rid: str) -> dict[str, Any] | None:  # a resume is a run of the same project
        row = await conn.fetchrow(
            f"SELECT run_id, status, started_at, resumed_from FROM runs WHERE {pg_run_scope(1)}", rid, space
        )
        if row is None:
            return None
        return {"run_id": row[0], "status": row[1], "started_at": row[2], "resumed_from": row[3]}

    start = await one(run_id)
    if start is None:
        return None
    root = start
    seen = {run_id}
    while root["resumed_from"] and len(seen) < MAX_CHAIN_RUNS:
        parent = await one(str(root["resumed_from"]))
        if parent is None or parent["run_id"] in seen:
            break
        seen.add(parent["run_id"])
        root = parent
    chain = {root["run_id"]: root}
    frontier = [root["run_id"]]
    while frontier and len(chain) < 2 * MAX_CHAIN_RUNS:
        rows = await conn.fetch(
            "SELECT run_id FROM runs WHERE resumed_from = ANY($1::text[]) AND coalesce(project, '') = $2",
            frontier,
            space,
        )
        generation = [child for (child_id,) in rows if (child := await one(str(child_id))) is not None]
        generation = [c for c in generation if c["run_id"] not in chain]
        generation.sort(key=lambda r: (r["started_at"] or "", r["run_id"]))
        frontier = []
        for child in generation:
            chain[child["run_id"]] = child
            frontier.append(child["run_id"])
    return list(chain.values())
