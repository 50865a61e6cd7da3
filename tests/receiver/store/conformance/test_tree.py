"""The Store conformance suite, the Merkle tree: heads, consistency proofs and a run's inclusion proofs."""

from __future__ import annotations

import json

import pytest

from flowledger._exceptions import StoreError
from flowledger.receiver.store._merkle import EMPTY_ROOT, verify_consistency, verify_inclusion
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection, Store, TreeHead
from flowledger.receiver.store._tree import PROOF_CHUNK
from tests.receiver._support import RunEvents, run_among_others, simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


async def _append(store: Store, *runs: RunEvents) -> None:
    outcomes = await store.append(prepared([e for run in runs for e in run.events]))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}


async def test_tree_heads_grow_consistently(store: Store) -> None:
    """Each head is provably a prefix of every later one, a purge included; a larger old size gets no proof."""
    empty = await store.tree_head()
    assert (empty.size, empty.root) == (0, EMPTY_ROOT)
    runs = [typical_run(), *(simple_run() for _ in range(9))]
    heads: list[TreeHead] = []
    for run in runs:
        await _append(store, run)
        heads.append(await store.tree_head())
    await store.purge(PurgeSelection(run_ids=(runs[0].run_id,), by="test"))
    now = await store.tree_head()
    assert now.size == heads[-1].size + 1
    for old in heads:
        head, path = await store.consistency_proof(old.size)
        assert head == now
        assert verify_consistency(old.size, head.size, old.root, head.root, path)
    head, path = await store.consistency_proof(now.size + 5)
    assert (head, path) == (now, [])


async def test_every_head_is_a_provable_prefix_of_every_later_one(store: Store) -> None:
    """Every head after a commit group is proven a prefix of the last one, on paths through stored subtrees."""
    heads: list[TreeHead] = [await store.tree_head()]
    for run in [typical_run(), *(simple_run() for _ in range(70))]:
        await _append(store, run)
        heads.append(await store.tree_head())
    assert heads[-1].size > 256  # stored subtrees (level 8 and up) are on the paths
    for old in heads[1:-1]:
        head, path = await store.consistency_proof(old.size)
        assert head == heads[-1]
        assert verify_consistency(old.size, head.size, old.root, head.root, path)
        assert not verify_consistency(old.size, head.size, heads[0].root, head.root, path)


async def test_a_runs_entries_are_proven_in_an_older_tree(store: Store) -> None:
    """run_proof gives the run's entries within the first N, each with a path that verifies against that root."""
    first, second = typical_run(), simple_run()
    await _append(store, first, second)
    then = await store.tree_head()
    await _append(store, simple_run())
    proofs = await store.run_proof(first.run_id, then.size)
    assert [p.seq for p in proofs] == list(range(1, len(first.events) + 1))
    for proof in proofs:
        assert verify_inclusion(proof.leaf, proof.seq - 1, then.size, proof.path, then.root)
        assert proof.payload is not None
        assert json.loads(proof.payload)["run_id"] == first.run_id
    assert await store.run_proof("no-such-run", then.size) == []
    assert await store.run_proof(first.run_id, then.size, project="elsewhere") == []


async def test_a_purged_runs_entries_are_proven_without_payloads(store: Store) -> None:
    """After a purge the entries still prove, with no payload."""
    run = simple_run()
    await _append(store, run)
    await store.purge(PurgeSelection(run_ids=(run.run_id,), by="test"))
    head = await store.tree_head()
    proofs = await store.run_proof(run.run_id, head.size)
    assert len(proofs) == len(run.events)
    assert all(p.payload is None for p in proofs)
    assert all(verify_inclusion(p.leaf, p.seq - 1, head.size, p.path, head.root) for p in proofs)


async def test_runs_whose_entries_cross_blocks_of_folded_subtrees_are_proven(store: Store) -> None:
    """Runs on either side of a 256-entry boundary, one across it, and the newest in a block not yet full: every
    entry of each proves against the head (small subtrees are folded a block at a time and shared by proofs)."""
    runs = [simple_run() for _ in range(40)] + [typical_run() for _ in range(20)] + [simple_run() for _ in range(40)]
    await _append(store, *runs)
    head = await store.tree_head()
    assert head.size > 2 * 256
    first_seq = 1
    for run in runs:
        proofs = await store.run_proof(run.run_id, head.size)
        assert [p.seq for p in proofs] == list(range(first_seq, first_seq + len(run.events)))
        for proof in proofs:
            assert verify_inclusion(proof.leaf, proof.seq - 1, head.size, proof.path, head.root)
        first_seq += len(run.events)


async def test_a_long_runs_proof_is_read_a_chunk_at_a_time(store: Store) -> None:
    """iter_run_proof hands a run's proof on a chunk of PROOF_CHUNK entries at most, in seq order: the same
    entries, payloads and paths as run_proof, so that proving a run costs a chunk's memory, not the run's."""
    run, events = run_among_others(steps=300, between=1)  # 602 entries, spread among the others'
    outcomes = await store.append(prepared(events))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}
    await _append(store, simple_run())
    head = await store.tree_head()
    chunks = [chunk async for chunk in store.iter_run_proof(run.run_id, head.size)]
    assert [len(chunk) for chunk in chunks] == [PROOF_CHUNK, PROOF_CHUNK, len(run.events) - 2 * PROOF_CHUNK]
    streamed = [proof for chunk in chunks for proof in chunk]
    assert streamed == await store.run_proof(run.run_id, head.size)
    assert all(verify_inclusion(p.leaf, p.seq - 1, head.size, p.path, head.root) for p in streamed)
    assert [json.loads(p.payload or "")["event_id"] for p in streamed] == [e["event_id"] for e in run.events]
    assert [chunk async for chunk in store.iter_run_proof("no-such-run", head.size)] == []
    assert [chunk async for chunk in store.iter_run_proof(run.run_id, head.size, project="elsewhere")] == []
    with pytest.raises(StoreError) as raised:
        await anext(store.iter_run_proof(run.run_id, head.size + 1))
    assert isinstance(raised.value.__cause__, LookupError)
