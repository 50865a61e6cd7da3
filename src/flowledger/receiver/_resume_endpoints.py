"""Where the viewer's *Resume* button sends a resume: one workflow app per workflow id, from configuration.

``FLOWLEDGER_RESUME_ENDPOINTS=order-intake=http://127.0.0.1:8000,refunds=http://10.0.0.5:8000`` maps
workflow ids to the base URL of their generated http app. A resume is forwarded as ``POST
{base}/_flowledger/resume`` only to a URL an operator wrote here, never to one taken from a recorded
event, so nothing sent to the receiver can make it call an address of its choosing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from flowledger._exceptions import ConfigError

__all__ = ["RESUME_ENDPOINTS_ENV", "parse_resume_endpoints"]

RESUME_ENDPOINTS_ENV: Final = "FLOWLEDGER_RESUME_ENDPOINTS"
_WORKFLOW_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")


def parse_resume_endpoints(text: str) -> Mapping[str, str]:
    """``id=URL,id=URL`` as a mapping; ConfigError naming the entry that is not such a pair."""
    out: dict[str, str] = {}
    for index, entry in enumerate(part.strip() for part in text.split(",")):
        if not entry:
            continue
        workflow_id, sep, url = (piece.strip() for piece in entry.partition("="))
        where = f"{RESUME_ENDPOINTS_ENV} entry {index + 1} ({entry[:80]!r})"
        if not sep or not _WORKFLOW_ID.match(workflow_id):
            raise ConfigError(f"{where} is not WORKFLOW_ID=URL; write for example order-intake=http://127.0.0.1:8000")
        if not url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"{where}: the URL must start with http:// or https://")
        out[workflow_id] = url.rstrip("/")
    return out
