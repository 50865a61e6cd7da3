"""The history viewer: the page at ``/``, its static files (``static/``), and the JSON under ``/api/viewer/``."""

from __future__ import annotations

from flowledger.receiver.viewer._routes import CONTENT_SECURITY_POLICY, STATIC_FILES
from flowledger.receiver.viewer._summary import SummaryCache

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_FILES", "SummaryCache"]
