"""Fixtures for the codegen tests (shared with the workflow tests, see ``tests._generated``)."""

from __future__ import annotations

from tests._generated import build, events, write_definition

__all__ = ["build", "events", "write_definition"]
