"""The ingest stage: reading and validating ``POST /v1/events`` bodies (the shared writer commits them).

Each event is validated by ``flowledger.receiver._validate``, which the CLI's ``import`` shares.
"""

from __future__ import annotations

from flowledger.receiver.ingest._batch import Batch, decode_batch

__all__ = ["Batch", "decode_batch"]
