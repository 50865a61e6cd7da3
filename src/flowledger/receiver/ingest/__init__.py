"""The ingest stage: reading and validating ``POST /v1/events`` bodies, and the writer task that commits them."""

from __future__ import annotations

from flowledger.receiver.ingest._body import Batch, decode_batch, read_body
from flowledger.receiver.ingest._validate import Rejection, prepare_event
from flowledger.receiver.ingest._writer import Writer

__all__ = ["Batch", "Rejection", "Writer", "decode_batch", "prepare_event", "read_body"]
