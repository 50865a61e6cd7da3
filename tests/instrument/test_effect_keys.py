"""Idempotency keys: an item of a mapped effect is keyed by its index too; other effects keep the keys they had."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flowledger.instrument._effects import idempotency_key


def _sha(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_a_mapped_items_key_holds_its_index_and_other_keys_are_unchanged() -> None:
    """Equal items at two indexes get two keys, each the same on every run; without an item the key is as before."""
    value = {"to": "ann@example.com", "amount": 7}
    plain = {"input": value, "node_id": "charge", "workflow_id": "shop"}
    assert idempotency_key("shop", "charge", value) == _sha(plain)
    first = idempotency_key("shop", "charge", value, item=0)
    second = idempotency_key("shop", "charge", value, item=1)
    assert first == _sha(plain | {"item": 0})
    assert second == _sha(plain | {"item": 1})
    assert len({first, second, _sha(plain)}) == 3
    assert idempotency_key("shop", "charge", value, item=1) == second
