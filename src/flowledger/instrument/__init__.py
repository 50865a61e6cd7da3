"""The runtime SDK: run and node hooks, capture, sender, spool, OTel bridge."""

from __future__ import annotations

__all__: list[str] = []
