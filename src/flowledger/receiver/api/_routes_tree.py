"""The ledger's Merkle tree over HTTP: its head, consistency proofs and a run's inclusion proofs.

These let ``flowledger checkpoint``, ``verify --checkpoint FILE --key`` and
``prove`` work against a running receiver (``--url``) from another machine:
the signing key and the checks stay with the client, which verifies every
proof it is given against the signed checkpoint, so the receiver cannot
answer its way past a rewrite.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError, StoreError
from flowledger.receiver._params import QueryParams, refuse_params
from flowledger.receiver._state import error_response, receiver_of, run_project_of
from flowledger.receiver.api._cut_stream import CutOnStoreError
from flowledger.receiver.store._protocol import EntryProof

__all__ = ["ROUTES"]

_log = logging.getLogger("flowledger.receiver")

_MAX_SIZE: Final = 2**62
"""The largest tree size a query may name (the OpenAPI description says so too)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def tree_head(request: Request) -> Response:
    """The tree's size (entries) and root hash (base64)."""
    if refused := refuse_params(request):
        return error_response(400, refused)
    head = await receiver_of(request).store.tree_head()
    return JSONResponse({"size": head.size, "root": _b64(head.root)})


async def consistency(request: Request) -> Response:
    """The head now and the RFC 9162 consistency proof from ``from`` entries (base64 hashes)."""
    try:
        params = QueryParams(request)
        params.expect(("from",))
        old_size = params.integer("from", default=1, low=1, high=_MAX_SIZE)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    head, path = await receiver_of(request).store.consistency_proof(old_size)
    return JSONResponse({"size": head.size, "root": _b64(head.root), "path": [_b64(node) for node in path]})


def _entry_json(proof: EntryProof) -> dict[str, Any]:
    return {
        "seq": proof.seq,
        "entry": proof.entry.decode("utf-8"),
        "prev_hash": _b64(proof.prev_hash),
        "payload": None if proof.payload is None else proof.payload.decode("utf-8"),
        "path": [_b64(node) for node in proof.path],
    }


def _json(item: dict[str, Any]) -> bytes:
    """As JSONResponse renders it, so the streamed answer is byte for byte the one it used to build whole."""
    return json.dumps(item, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


async def _proof_body(first: list[EntryProof], rest: AsyncIterator[list[EntryProof]]) -> AsyncIterator[bytes]:
    """``{"entries":[...]}``, a chunk of entries per piece of the body."""
    yield b'{"entries":[' + b",".join(_json(_entry_json(p)) for p in first)
    async for chunk in rest:
        yield b"," + b",".join(_json(_entry_json(p)) for p in chunk)
    yield b"]}"


async def run_proof(request: Request) -> Response:
    """A run's entries among the first ``size``, with payloads and audit paths; 404 when it has none.

    The answer is streamed, a chunk of entries read and written at a time, so its cost in memory is a chunk's
    whatever the run's size. A failure before the first entry is answered as any read's is (503 when the database
    cannot answer now, 500 for a fault; a 404 when the tree is smaller than ``size``); one after cuts the body
    short, as an export's.
    """
    run_id = request.path_params["run_id"]
    try:
        project = run_project_of(request, others=("size",))
        params = QueryParams(request, blank_is_absent=False)
        if params.text("size") is None:
            raise QueryParamError("query parameter size is required: the tree size to prove against (a checkpoint's)")
        size = params.integer("size", default=0, low=1, high=_MAX_SIZE)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    chunks = receiver_of(request).store.iter_run_proof(run_id, size, project=project)
    try:
        first = await anext(chunks, None)
    except StoreError as exc:
        if not isinstance(exc.__cause__, LookupError):  # the database failed: the app answers it (503 or 500)
            raise
        return error_response(404, str(exc))  # the tree is smaller than that
    if first is None:
        return error_response(404, f"run {run_id!r} has no entry among the first {size}")
    return CutOnStoreError(_proof_body(first, chunks), what="a run proof", media_type="application/json")


ROUTES: Final = [
    Route("/api/tree", tree_head, methods=["GET"]),
    Route("/api/tree/consistency", consistency, methods=["GET"]),
    Route("/api/tree/runs/{run_id}", run_proof, methods=["GET"]),
]
