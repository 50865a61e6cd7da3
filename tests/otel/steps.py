"""Node functions of the workflows the OTel tests generate (imported by generated modules)."""

from __future__ import annotations

from typing import Any


def prepare(payload: Any) -> dict[str, Any]:
    """Add one to ``n``."""
    return {"n": int(payload["n"]) + 1}


def echo(payload: Any) -> dict[str, Any]:
    """Answer with what came in."""
    return {"echo": payload}


def fail(payload: Any) -> None:
    """Always fail."""
    raise ValueError(f"refused {payload!r}")
