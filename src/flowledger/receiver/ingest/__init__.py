"""The ingest stage: reading and validating ``POST /v1/events`` bodies (the shared writer commits them)."""

from __future__ import annotations

from flowledger.receiver.ingest._batch import Batch, decode_batch
from flowledger.receiver.ingest._validate import Rejection, prepare_event

__all__ = ["Batch", "Rejection", "decode_batch", "prepare_event"]
