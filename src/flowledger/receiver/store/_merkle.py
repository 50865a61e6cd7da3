"""The ledger as a Merkle tree in the shape of RFC 9162 (Certificate Transparency v2), section 2.1.

Leaf ``i`` is ledger entry ``seq = i + 1``: ``leaf = SHA-256(0x00 || data)``,
where the leaf data is ``prev_hash || entry`` for an entry of format 3, so
that its leaf is its chain hash, and the entry alone for format 2 (see
:mod:`._entry`, :func:`~._entry.entry_leaf`); an inner node is
``SHA-256(0x01 || left || right)``. The tree of ``n`` leaves splits at the
largest power of two below ``n``.

The store keeps the *frontier* (the perfect subtrees that make up the tree
now, one per set bit of its size) so appending a leaf costs O(log n)
hashes, and it stores every perfect subtree at level :data:`STORED_MIN_LEVEL`
or above; lower ones are recomputed from at most ``2 ** (STORED_MIN_LEVEL - 1)``
entries. Any subtree hash the proofs need is then a fold of O(log n)
perfect subtrees (:func:`range_hash`).

Everything here is pure: no database, no receiver. The offline proof checker
(:mod:`._proof`) imports only this module and :mod:`._checkpoint`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "FIRST_STORED_MIN_LEVEL",
    "STORED_MIN_LEVEL",
    "BlockFolds",
    "Frontier",
    "PerfectHash",
    "consistency_path",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "subtrees_below",
    "verify_consistency",
    "verify_inclusion",
]

STORED_MIN_LEVEL: Final = 8
"""Perfect subtrees of 256 leaves and more are stored (a row per 128 entries); smaller ones are recomputed from
the entries (at most 255 for a proof's path, about 0.3 ms)."""
FIRST_STORED_MIN_LEVEL: Final = 4
"""Where ledgers made before :data:`STORED_MIN_LEVEL` was 8 began storing subtrees: those nodes are still checked
by ``verify``, and not needed by anything."""
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""The root of the empty tree (RFC 9162: the hash of the empty string)."""

_NODE_PREFIX: Final = hashlib.sha256(b"\x01")

PerfectHash = Callable[[int, int], bytes]
"""``perfect(level, index)``: the hash of leaves ``index * 2**level`` up to ``(index + 1) * 2**level``."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: RFC 9162's hash of a leaf's data."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The perfect subtrees of the tree so far, largest first: appends in O(log n), the root in O(log n)."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} perfect subtrees, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def load(cls, size: int, perfect: PerfectHash) -> Frontier:
        """The frontier of a tree of ``size`` leaves, read through ``perfect``."""
        hashes, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                hashes.append(perfect(level, start >> level))
                start += 1 << level
        return cls(size, hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the perfect subtrees it completed ``(level, index, hash)``, level 1 and up."""
        index, h, level = self.size, leaf, 0
        done: list[tuple[int, int, bytes]] = []
        while index >> level & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            done.append((level, index >> level, h))
        self.hashes.append(h)
        self.size += 1
        return done

    def extend(self, leaves: Sequence[bytes], *, keep_from_level: int = 1) -> list[tuple[int, int, bytes]]:
        """Add many leaf hashes at once; return the subtrees they completed at ``keep_from_level`` and up.

        The same tree and the same subtrees as :meth:`append` of each leaf in
        turn, in one loop without a call per hash (a commit group of 1,000
        entries hashes about 1,000 inner nodes).
        """
        node_prefix = _NODE_PREFIX.copy  # a copied state costs less than a new one
        hashes, size = self.hashes, self.size
        push, pop = hashes.append, hashes.pop
        done: list[tuple[int, int, bytes]] = []
        for h in leaves:
            level = 0
            while size >> level & 1:
                state = node_prefix()
                state.update(pop())
                state.update(h)
                h = state.digest()
                level += 1
                if level >= keep_from_level:
                    done.append((level, size >> level, h))
            push(h)
            size += 1
        self.size = size
        return done

    def root(self) -> bytes:
        """The tree's root hash."""
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def copy(self) -> Frontier:
        """An independent copy (to append tentatively)."""
        return Frontier(self.size, self.hashes)


def subtrees_below(top: int, leaves: Mapping[int, bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree of a level below ``top`` whose leaves are all in ``leaves`` (leaf index -> leaf hash)."""
    found = {(0, index): h for index, h in leaves.items()}
    below = dict(leaves)
    for level in range(1, top):
        above = {}
        for index, left in below.items():
            if not index & 1 and (right := below.get(index + 1)) is not None:
                above[index >> 1] = node_hash(left, right)
        found.update({(level, index): h for index, h in above.items()})
        below = above
    return found


class BlockFolds:
    """Small perfect subtrees folded from the entries a block of ``2 ** top`` leaves at a time, the last few
    blocks kept.

    The proofs of a run's entries, which lie close together, then read and hash each block once rather than
    once per entry (a path needs its own block's subtrees and often the newest block's, the tree's right edge).
    Only the ``keep`` blocks used last are kept (about 100 KB each), so a run spread over many blocks costs
    no more memory than one. A perfect subtree never changes once complete, so a kept one is never stale.
    """

    def __init__(self, top: int, keep: int = 4) -> None:
        self.top = top
        self._keep = keep
        self._blocks: OrderedDict[int, dict[tuple[int, int], bytes]] = OrderedDict()

    def block(self, level: int, index: int) -> int:
        """The first leaf of the block that holds subtree ``(level, index)`` (``level`` below ``top``)."""
        return (index << level) >> self.top << self.top

    def get(self, level: int, index: int) -> bytes | None:
        """The subtree's hash when its block was folded and is still kept, else None."""
        block = self.block(level, index)
        folded = self._blocks.get(block)
        if folded is None:
            return None
        self._blocks.move_to_end(block)
        return folded.get((level, index))

    def fold(self, block: int, leaves: Mapping[int, bytes]) -> None:
        """Keep the complete subtrees of ``leaves`` (leaf index -> leaf hash), the block's leaves that exist."""
        self._blocks[block] = subtrees_below(self.top, leaves)
        self._blocks.move_to_end(block)
        while len(self._blocks) > self._keep:
            self._blocks.popitem(last=False)


def range_hash(lo: int, hi: int, perfect: PerfectHash) -> bytes:
    """``MTH(D[lo:hi])`` for a range the RFC's recursion produces (``lo`` aligned to the range's largest block)."""
    blocks: list[bytes] = []
    start = lo
    for level in range((hi - lo).bit_length() - 1, -1, -1):
        if (hi - lo) >> level & 1:
            blocks.append(perfect(level, start >> level))
            start += 1 << level
    h = blocks[-1]
    for left in reversed(blocks[:-1]):
        h = node_hash(left, h)
    return h


def inclusion_path(index: int, size: int, perfect: PerfectHash) -> list[bytes]:
    """RFC 9162 ``PATH(index, D[size])``: the audit path of leaf ``index`` (0-based) in the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            path.append(range_hash(lo + k, hi, perfect))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k, perfect))
            lo += k
    path.reverse()
    return path


def consistency_path(old_size: int, new_size: int, perfect: PerfectHash) -> list[bytes]:
    """RFC 9162 ``PROOF(old_size, D[new_size])``: that the tree of ``old_size`` leaves is a prefix of the new one."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size} leaves")
    path: list[bytes] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            path.append(range_hash(lo + k, hi, perfect))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k, perfect))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        path.append(range_hash(lo, hi, perfect))
    path.reverse()
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: whether ``path`` proves leaf hash ``leaf`` at ``index`` in the tree with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: whether ``path`` proves the tree ``old_root`` is a prefix of ``new_root``."""
    if old_size > new_size or old_size < 0:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if old_size == 0:
        return not path
    if not path:
        return False
    nodes = list(path)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is the first node
        nodes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
