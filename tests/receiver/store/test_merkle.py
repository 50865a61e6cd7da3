"""The Merkle tree (RFC 9162 shape) against pymerkle, an independent implementation, and against tampering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from flowledger.receiver.store._merkle import (
    EMPTY_ROOT,
    BlockFolds,
    Frontier,
    PerfectHash,
    consistency_path,
    inclusion_path,
    leaf_hash,
    node_hash,
    range_hash,
    subtrees_below,
    verify_consistency,
    verify_inclusion,
)


def _perfect(leaves: list[bytes]) -> PerfectHash:
    def perfect(level: int, index: int) -> bytes:
        nodes = leaves[index << level : (index + 1) << level]
        while len(nodes) > 1:
            nodes = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes), 2)]
        return nodes[0]

    return perfect


def _tree(count: int) -> tuple[list[bytes], InmemoryTree]:
    entries = [f'{{"seq":{i + 1}}}'.encode() for i in range(count)]
    reference = InmemoryTree()
    for entry in entries:
        reference.append_entry(entry)
    return [leaf_hash(e) for e in entries], reference


def test_roots_match_pymerkle_at_every_size() -> None:
    """The frontier's root equals pymerkle's RFC 9162 root after every append, and the range fold agrees."""
    leaves, reference = _tree(300)
    perfect = _perfect(leaves)
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for size in range(1, len(leaves) + 1):
        frontier.append(leaves[size - 1])
        assert frontier.root() == reference.get_root(size) == range_hash(0, size, perfect)
        assert Frontier.load(size, perfect).root() == frontier.root()


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=70),
    st.lists(st.integers(min_value=0, max_value=40), max_size=5),
    st.integers(min_value=1, max_value=5),
)
def test_extend_is_append_of_each_leaf(start: int, groups: list[int], keep_from_level: int) -> None:
    """Extending by a group of leaves builds the tree pymerkle builds, completing the subtrees append completes."""
    count = start + sum(groups)
    entries = [f'{{"seq":{i + 1}}}'.encode() for i in range(count)]
    leaves = [leaf_hash(entry) for entry in entries]
    one_by_one, grouped = Frontier(), Frontier()
    for leaf in leaves[:start]:
        one_by_one.append(leaf)
    grouped.extend(leaves[:start])
    at = start
    reference = InmemoryTree()
    for entry in entries:
        reference.append_entry(entry)
    for size in groups:
        expected = [
            node for leaf in leaves[at : at + size] for node in one_by_one.append(leaf) if node[0] >= keep_from_level
        ]
        assert grouped.extend(leaves[at : at + size], keep_from_level=keep_from_level) == expected
        at += size
        assert grouped.size == one_by_one.size == at
        assert grouped.root() == one_by_one.root() == (reference.get_root(at) if at else EMPTY_ROOT)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.data())
def test_inclusion_paths_match_pymerkle_and_verify(size: int, data: st.DataObject) -> None:
    """Our audit path is pymerkle's path without the leaf itself, and it verifies against the root."""
    leaves, reference = _tree(size)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    path = inclusion_path(index, size, _perfect(leaves))
    theirs = [bytes.fromhex(h) for h in reference.prove_inclusion(index + 1, size).serialize()["path"]]
    assert theirs[0] == leaves[index]
    assert theirs[1:] == path
    root = reference.get_root(size)
    assert verify_inclusion(leaves[index], index, size, path, root)
    assert not verify_inclusion(leaves[index], index, size, path, node_hash(root, root))
    if path:
        bent = [*path[:-1], node_hash(path[-1], path[-1])]
        assert not verify_inclusion(leaves[index], index, size, bent, root)
    other = (index + 1) % size
    if other != index:
        assert not verify_inclusion(leaves[other], index, size, path, root)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.data())
def test_consistency_proofs_verify_against_pymerkle_roots(new_size: int, data: st.DataObject) -> None:
    """A consistency proof from any old size verifies between pymerkle's two roots, and fails for another old root."""
    leaves, reference = _tree(new_size)
    old_size = data.draw(st.integers(min_value=1, max_value=new_size))
    path = consistency_path(old_size, new_size, _perfect(leaves))
    old_root, new_root = reference.get_root(old_size), reference.get_root(new_size)
    assert verify_consistency(old_size, new_size, old_root, new_root, path)
    assert not verify_consistency(old_size, new_size, node_hash(old_root, old_root), new_root, path)
    if old_size < new_size:
        assert not verify_consistency(old_size, new_size, old_root, node_hash(new_root, new_root), path)


def test_a_rewritten_prefix_is_not_consistent() -> None:
    """Changing one early entry gives a tree that no consistency proof joins to the old root."""
    leaves, reference = _tree(40)
    old_root = reference.get_root(25)
    forged = list(leaves)
    forged[3] = leaf_hash(b"forged")
    perfect = _perfect(forged)
    path = consistency_path(25, 40, perfect)
    assert not verify_consistency(25, 40, old_root, range_hash(0, 40, perfect), path)


def test_bounds_are_refused() -> None:
    """Out-of-range leaves and sizes are errors to build and failures to verify."""
    leaves, _ = _tree(5)
    with pytest.raises(ValueError):
        inclusion_path(5, 5, _perfect(leaves))
    with pytest.raises(ValueError):
        consistency_path(6, 5, _perfect(leaves))
    with pytest.raises(ValueError):
        Frontier(3, [b"x"])
    assert not verify_inclusion(leaves[0], 5, 5, [], EMPTY_ROOT)
    assert not verify_consistency(6, 5, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(5, 5, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(2, 5, EMPTY_ROOT, EMPTY_ROOT, [])


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 63), max_size=64), st.integers(1, 6))
def test_subtrees_below_are_the_complete_subtrees_and_their_folds(present: set[int], top: int) -> None:
    """Exactly the subtrees below ``top`` whose every leaf is given come back, each the fold of its leaves."""
    leaves, _ = _tree(64)
    perfect = _perfect(leaves)
    found = subtrees_below(top, {i: leaves[i] for i in present})
    complete = {
        (level, index)
        for level in range(top)
        for index in range(64 >> level)
        if all(leaf in present for leaf in range(index << level, (index + 1) << level))
    }
    assert found.keys() == complete
    assert all(h == perfect(level, index) for (level, index), h in found.items())


def test_block_folds_keep_the_blocks_used_last() -> None:
    """Folds are found by any subtree of their block; past ``keep`` blocks the one used longest ago is dropped,
    a block read again stays."""
    leaves, _ = _tree(6 * 4)
    perfect = _perfect(leaves)
    folds = BlockFolds(2, keep=3)  # blocks of four leaves
    for block in range(0, 12, 4):
        folds.fold(block, {i: leaves[i] for i in range(block, block + 4)})
    assert folds.block(1, 3) == 4
    assert folds.block(0, 11) == 8
    assert folds.get(1, 0) == perfect(1, 0)  # block 0 used again: block 4 is now the oldest
    folds.fold(12, {i: leaves[i] for i in range(12, 16)})
    assert folds.get(0, 5) is None
    assert folds.get(1, 1) == perfect(1, 1)
    assert folds.get(1, 4) == perfect(1, 4)
    assert folds.get(1, 6) == perfect(1, 6)
    assert folds.get(2, 0) is None  # level 2 is a block's own level: not below top, never folded
