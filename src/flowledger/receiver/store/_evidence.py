"""What a resume needs from the ledger: each node's complete output, checked against the ledger.

:func:`resume_evidence` answers, for one run, the run's trigger data and,
per node, its last attempt's status, effect key, definition hash and, for a
node that succeeded, its output's JSON text when the record holds the whole
output: captured in full (``capture: full``, the blob), or recorded whole by
the default capture (the event's own ``output`` with no marker of a value
cut or without a JSON form and nothing redacted: the output's JSON form, as
a full capture stores it; ``capture`` is then ``recorded``). Before an
output is handed out it is checked three ways:

1. the blob hashes to the ``output_sha256`` that the node's ``node_finished``
   payload states (a changed blob is caught; a recorded output is in that
   payload itself);
2. that payload hashes to the ``payload_sha256`` its ledger entry commits to
   (a changed payload is caught);
3. the entry is in the ledger's Merkle tree (its inclusion proof against the
   tree head, :func:`~._merkle.verify_inclusion`) and in the hash chain (its
   ``hash`` is ``sha256(prev_hash || entry)`` and the next entry links to it):
   a changed entry is caught.

The run's projection only says *where* to look (``node_runs.output_seq``,
``runs.input_seq``): it is not trusted to say *whose* row that is. Every row
read is checked to be the record it stands for (:class:`Owner`): a run's
input row is the ``run_started`` of this run, in this project; a node's
output row is a ``node_finished`` of this run and project, of this node and
attempt (``node_id`` and ``span_id`` in its payload), recording it succeeded
with the idempotency key the projection shows. A projection pointed at
another node's row, or at a failed attempt's, is named as tampering.

A node that fails a check gets a ``problem`` naming what does not match,
and its output is withheld; a resume refuses to go on with it.

An effect a dry run only simulated (``simulated`` in its ``node_finished``,
or any effect of a run whose ``run_started`` says ``dry_run``) is marked
``simulated``: its recorded output is not what the effect would return, and a
live resume runs it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from flowledger._wire import MARKER_KEY, NODE_SHA256_ATTRIBUTE, REDACTED, EventKind, NodeStatus, OutputCapture
from flowledger.receiver.store._entry import ENTRY_COLUMNS, entry_hashes, entry_of, parse_entry
from flowledger.receiver.store._merkle import inclusion_path, verify_inclusion
from flowledger.receiver.store._namespace import NAMESPACES_SQL, one_namespace, run_scope
from flowledger.receiver.store._protocol import TreeHead
from flowledger.receiver.store._tree import _head, perfect_reader

__all__ = [
    "MAX_CHAIN_RUNS",
    "RECORDED",
    "BlobChecker",
    "Owner",
    "merged_attributes",
    "owner_problem",
    "resume_chain",
    "resume_evidence",
    "reusable_payload",
]


class BlobChecker(Protocol):
    """What :func:`reusable_payload` asks of an engine: a blob checked to hash to its digest, and a tampering flag."""

    tampered: bool

    def blob(self, digest: str) -> tuple[str | None, str | None]: ...


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose ledger row a read expects: an entry of one of ``kinds``, of one run in one namespace ('' no project), and
    for a node's row its node and attempt, and (``status``, ``idempotency_key``) the outcome it records."""

    kinds: tuple[EventKind, ...]
    run_id: str
    space: str
    node_id: str | None = None
    span_id: str | None = None
    status: NodeStatus | None = None
    idempotency_key: str | None = None


def _same(recorded: Any, projected: Any) -> bool:
    """Whether a ledger value is the projection's: a NUL reads as U+FFFD, as PostgreSQL's text stores it."""
    if recorded == projected:
        return True
    if isinstance(recorded, str) and isinstance(projected, str):
        return recorded.replace("\x00", "\ufffd") == projected.replace("\x00", "\ufffd")
    return False


def owner_problem(seq: int, fields: Mapping[str, Any], body: Mapping[str, Any], owner: Owner) -> str | None:
    """Why verified ledger row ``seq`` (its entry ``fields``, its payload ``body``) is not the record ``owner`` says
    the run's projection points at, or None when it is. Any mismatch means the projection was changed."""
    changed = "(the run's records in the database were changed)"
    kind = fields.get("kind")
    if kind not in owner.kinds:
        wanted = " or ".join(owner.kinds)
        return f"ledger entry {seq} is a {kind} entry, not the {wanted} its records point at {changed}"
    if not _same(fields.get("run_id"), owner.run_id) or not _same(fields.get("project") or "", owner.space):
        return f"ledger entry {seq} belongs to another run, not to this one {changed}"
    data = body.get("data")
    if owner.node_id is None:
        return None
    if not isinstance(data, Mapping) or not _same(data.get("node_id"), owner.node_id):
        other = data.get("node_id") if isinstance(data, Mapping) else None
        other = other.replace("\x00", "\ufffd") if isinstance(other, str) else other
        return f"ledger entry {seq} is the {kind} of node `{other}`, not of this node {changed}"
    if owner.span_id is not None and data.get("span_id") is not None and not _same(data["span_id"], owner.span_id):
        return f"ledger entry {seq} is the {kind} of another attempt of this node {changed}"
    if owner.status is not None and data.get("status") != owner.status:
        return f"ledger entry {seq} records the node {data.get('status')}, not {owner.status.value} {changed}"
    if owner.status is not None and not _same(data.get("idempotency_key"), owner.idempotency_key):
        return f"ledger entry {seq} records another idempotency key for this node {changed}"
    return None


class _Checker:
    """Checks ledger rows against the tree head and the chain, and reads their payloads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.head = _head(conn)
        self.perfect = perfect_reader(conn)
        self.tampered = False
        """Set by the last check that failed because something was changed (not merely missing)."""

    def _tampered(self, problem: str) -> tuple[None, str]:
        self.tampered = True
        return None, problem

    def payload(self, seq: int | None, owner: Owner) -> tuple[dict[str, Any] | None, str | None]:
        """The verified payload body of ledger row ``seq``, the ``owner``'s record, or a problem (a tampering one noted
        in ``tampered``)."""
        if seq is None:
            return None, "it has no ledger entry"
        row = self.conn.execute(
            f"SELECT {ENTRY_COLUMNS.format('l.')}, l.prev_hash, l.hash, CAST(p.body AS BLOB), "
            "(SELECT n.prev_hash FROM ledger n WHERE n.seq = l.seq + 1) "
            "FROM ledger l LEFT JOIN payloads p ON p.seq = l.seq WHERE l.seq = ?",
            (seq,),
        ).fetchone()
        if row is None:
            return self._tampered(f"ledger entry {seq} is missing")
        entry, payload_digest, prev_hash, own_hash = entry_of(row[:10]), bytes(row[9]), bytes(row[10]), bytes(row[11])
        body, next_prev = row[12], row[13]
        chain, leaf = entry_hashes(prev_hash, entry)
        if chain != own_hash or (next_prev is not None and bytes(next_prev) != own_hash):
            return self._tampered(f"ledger entry {seq} is not in the hash chain (the entry or its hashes were changed)")
        path = inclusion_path(seq - 1, self.head.size, self.perfect)
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

    def blob(self, digest: str) -> tuple[str | None, str | None]:
        """The blob stored under ``digest``, checked to hash to it, or a problem."""
        row = self.conn.execute("SELECT body FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        if row is None:
            return None, "its complete output is not stored (purged, or sent by an older receiver)"
        text = str(row[0])
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
            self.tampered = True
            return None, "its stored output does not match the hash the ledger recorded (the blob was changed)"
        return text, None


_NULL_WHEN_OFF: Final = frozenset({"trigger_data"})
"""Payloads an SDK writes as null when capture is off (an output is left out instead): a recorded null may not be
the real value, so it is not reused (a resume takes ``--input``)."""
RECORDED: Final = "recorded"
"""The ``capture`` of an output the default capture recorded whole in its event (see the module docstring)."""


def _not_whole(value: Any) -> str | None:
    """Why a value the default capture recorded is not the whole output (a marker, a redaction), or None."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if MARKER_KEY in item:
                kind = item[MARKER_KEY]
                return (
                    f"its recorded output was cut at the capture limit ({kind})"
                    if kind == "truncated"
                    else (f"its recorded output holds a value with no JSON form ({kind})")
                )
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif item == REDACTED:
            return "a key that looks secret was redacted in its recorded output"
    return None


def reusable_payload(data: dict[str, Any], prefix: str, checker: BlobChecker) -> dict[str, Any]:
    """``{capture, sha256, text, problem}`` of a payload (``text`` only when reusable): captured in full, or
    recorded whole in the (verified) event ``data`` by the default capture."""
    how = data.get(f"{prefix}_capture")
    digest = data.get(f"{prefix}_sha256")
    out: dict[str, Any] = {"capture": how, "sha256": digest, "text": None, "problem": None}
    if how is None:
        if prefix not in data or (prefix in _NULL_WHEN_OFF and data[prefix] is None):
            out["problem"] = "it was not recorded (add `capture: full` to the workflow or the node)"
            return out
        problem = _not_whole(data[prefix])
        if problem is not None:
            out["problem"] = f"{problem} (add `capture: full` to the workflow or the node)"
            return out
        text = json.dumps(data[prefix], ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        out.update(capture=RECORDED, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), text=text)
    elif how != OutputCapture.FULL.value:
        why = {
            OutputCapture.REDACTED.value: "a key that looks secret was redacted",
            OutputCapture.UNREPRESENTABLE.value: "it holds values with no JSON form",
            OutputCapture.TOO_LARGE.value: "it was over the full-capture size limit",
        }.get(str(how), str(how))
        out["problem"] = f"its recorded output is not the real one: {why}"
    elif isinstance(digest, str):
        out["text"], out["problem"] = checker.blob(digest)
    else:
        out["problem"] = "its complete output's hash was not recorded"
    return out


def merged_attributes(*bodies: dict[str, Any] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for body in bodies:
        data = (body or {}).get("data") or {}
        attributes = data.get("attributes")
        if isinstance(attributes, dict):
            merged.update(attributes)
    return merged


def node_entry(node_id: str, status: Any, effect: Any, idempotency_key: Any) -> dict[str, Any]:
    """A node's evidence before its output is read: its outcome as the projection shows it, nothing verified yet."""
    return {
        "node_id": node_id,
        "status": status,
        "effect": bool(effect),
        "idempotency_key": idempotency_key,
        "simulated": False,
        "node_sha256": None,
        "output_capture": None,
        "output_sha256": None,
        "output": None,
        "problem": None,
        "tampered": False,
    }


def node_owners(run_id: str, space: str, row: Any) -> tuple[Owner, Owner]:
    """Whose rows a node's ``input_seq`` and ``output_seq`` must be: of this run and node, of the attempt ``row``
    (``node_id, status, item, effect, idempotency_key, input_seq, output_seq, attempt, span_id``) names, its
    output row a ``node_finished`` recording it succeeded with the attempt's key."""
    node_id, key, span_id = str(row[0]), row[4], row[8]
    started = Owner((EventKind.NODE_STARTED, EventKind.NODE_FINISHED), run_id, space, node_id, span_id)
    finished = Owner((EventKind.NODE_FINISHED,), run_id, space, node_id, span_id, NodeStatus.SUCCEEDED, key)
    return started, finished


def run_owner(run_id: str, space: str) -> Owner:
    """Whose row a run's ``input_seq`` must be: the ``run_started`` of this run."""
    return Owner((EventKind.RUN_STARTED,), run_id, space)


def finish_node(entry: dict[str, Any], finished: dict[str, Any] | None, dry_run: bool) -> None:
    """Mark a succeeded effect a dry run only simulated (its verified ``node_finished`` says so, or the run was dry)."""
    data = (finished or {}).get("data") or {}
    entry["simulated"] = bool(entry["effect"] and (data.get("simulated") or dry_run))


def evidence_of(
    run: Any, trigger: dict[str, Any], tampered: bool, head: TreeHead, nodes: list[dict[str, Any]]
) -> dict[str, Any]:
    """The answer: the run (``run_id, project, workflow_id, status, definition_sha256, resumed_from``), its trigger
    data, the tree head the checks used and the nodes."""
    return {
        "run": {
            "run_id": run[0],
            "project": run[1],
            "workflow_id": run[2],
            "status": run[3],
            "definition_sha256": run[4],
            "resumed_from": run[5],
            "dry_run": trigger["dry_run"],
            "input": {
                "capture": trigger["capture"],
                "sha256": trigger["sha256"],
                "text": trigger["text"],
                "problem": trigger["problem"],
                "tampered": tampered,
            },
        },
        "tree": {"size": head.size, "root": head.root.hex()},
        "nodes": nodes,
    }


NODE_ROWS_SQL: Final = (
    "SELECT node_id, status, item, effect, idempotency_key, input_seq, output_seq, attempt, span_id FROM node_runs "
)
"""The columns of a node attempt that :func:`node_owners` and the evidence read (then ``WHERE`` and ``ORDER BY``)."""


def last_attempts(rows: list[Any]) -> tuple[dict[str, Any], set[str]]:
    """The attempt each node's outcome is (a succeeded attempt wins, else the latest), and the mapped nodes."""
    last: dict[str, Any] = {}
    mapped: set[str] = set()
    for row in rows:
        if row[2] is not None:
            mapped.add(str(row[0]))
        current = last.get(str(row[0]))
        if current is None or current[1] != NodeStatus.SUCCEEDED.value:
            last[str(row[0])] = row
    return last, mapped


def resume_evidence(conn: sqlite3.Connection, run_id: str, project: str | None) -> dict[str, Any] | None:
    """The run's evidence for a resume (see the module docstring); None for an unknown or another project's run."""
    conn.execute("BEGIN")
    try:
        space = one_namespace(run_id, project, conn.execute(NAMESPACES_SQL, (run_id,)))
        run = (
            None
            if space is None
            else conn.execute(
                "SELECT run_id, project, workflow_id, status, definition_sha256, resumed_from, input_seq "
                f"FROM runs WHERE {run_scope()}",
                (run_id, space),
            ).fetchone()
        )
        if space is None or run is None:
            return None
        checker = _Checker(conn)
        started, problem = checker.payload(run[6], run_owner(run_id, space))
        started_data = (started or {}).get("data") or {}
        trigger = reusable_payload(started_data, "trigger_data", checker)
        if problem is not None:
            trigger.update(text=None, problem=problem)
        trigger["dry_run"] = bool(started_data.get("dry_run"))
        input_tampered = checker.tampered
        rows = conn.execute(
            NODE_ROWS_SQL + f"WHERE {run_scope()} ORDER BY started_at, attempt, item, span_id", (run_id, space)
        ).fetchall()
        last, mapped = last_attempts(rows)
        nodes = []
        for node_id, row in last.items():
            checker.tampered = False
            entry = node_entry(node_id, row[1], row[3], row[4])
            if node_id in mapped:
                entry["problem"] = "it is a mapped node (mapped nodes are run again)"
            elif row[1] == NodeStatus.SUCCEEDED.value:
                began, ended = node_owners(run_id, space, row)
                finished, problem = checker.payload(row[6], ended)
                started_body, started_problem = (
                    checker.payload(row[5], began) if row[5] is not None and row[5] != row[6] else (None, None)
                )
                if problem is None and checker.tampered:  # its input row is not its own
                    problem = started_problem
                entry["node_sha256"] = merged_attributes(started_body, finished).get(NODE_SHA256_ATTRIBUTE)
                finish_node(entry, finished, trigger["dry_run"])
                if problem is not None:
                    entry["problem"] = problem
                else:
                    full = reusable_payload((finished or {}).get("data") or {}, "output", checker)
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
    finally:
        conn.execute("ROLLBACK")


MAX_CHAIN_RUNS: Final = 100
"""At most this many runs are listed in a chain of resumes (the original's side and the resumes' side each)."""


def resume_chain(conn: sqlite3.Connection, run_id: str, project: str | None) -> list[dict[str, Any]] | None:
    """The original run of ``run_id``'s chain, then every resume of it, each after the run it resumes.

    Resumes of the same run are listed in start order.

    Each entry is ``{run_id, status, started_at, resumed_from}``; None for an unknown or another project's run.
    """

    space = one_namespace(run_id, project, conn.execute(NAMESPACES_SQL, (run_id,)))
    if space is None:
        return None

    def one(rid: str) -> dict[str, Any] | None:  # a resume is a run of the same project
        row = conn.execute(
            f"SELECT run_id, status, started_at, resumed_from FROM runs WHERE {run_scope()}", (rid, space)
        ).fetchone()
        if row is None:
            return None
        return {"run_id": row[0], "status": row[1], "started_at": row[2], "resumed_from": row[3]}

    start = one(run_id)
    if start is None:
        return None
    root = start
    seen = {run_id}
    while root["resumed_from"] and len(seen) < MAX_CHAIN_RUNS:
        parent = one(str(root["resumed_from"]))
        if parent is None or parent["run_id"] in seen:
            break
        seen.add(parent["run_id"])
        root = parent
    chain = {root["run_id"]: root}
    frontier = [root["run_id"]]
    while frontier and len(chain) < 2 * MAX_CHAIN_RUNS:
        rows = conn.execute(
            f"SELECT run_id FROM runs WHERE resumed_from IN ({', '.join('?' * len(frontier))}) "
            "AND ifnull(project, '') = ?",
            [*frontier, space],
        ).fetchall()
        generation = [child for (child_id,) in rows if (child := one(str(child_id))) is not None]
        generation = [c for c in generation if c["run_id"] not in chain]
        generation.sort(key=lambda r: (r["started_at"] or "", r["run_id"]))
        frontier = []
        for child in generation:
            chain[child["run_id"]] = child
            frontier.append(child["run_id"])
    return list(chain.values())
