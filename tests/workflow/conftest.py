"""Fixtures for the workflow runtime tests (shared with the codegen tests, see ``tests._generated``)."""

from __future__ import annotations

from tests._generated import build, events, write_definition

__all__ = ["build", "events", "write_definition"]
