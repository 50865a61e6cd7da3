"""flowledger: workflow runs that report on themselves."""

from __future__ import annotations

from flowledger._version import __version__

__all__ = ["__version__"]
