"""Delivery: how emitted events leave the process.

The hooks hand each event to every :class:`EventSink` (the seam, in
``_sink``). The background :class:`Sender` is the default sink: a bounded
queue, batches posted to the receiver (``_post``, over ``_transport``),
retries with backoff and jitter (``_backoff``), a disk :class:`Spool` for
what cannot go out now, counted drops (``_counters``), and the export of
finished runs and nodes as OTLP spans (``_span_sender``, ``_otlp_spans``,
``_otlp_protobuf``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowledger.instrument.delivery._counters import DropReason
from flowledger.instrument.delivery._otlp_protobuf import OtlpProtocol
from flowledger.instrument.delivery._sink import EventSink
from flowledger.instrument.delivery._spool import Spool, SpoolResult

if TYPE_CHECKING:  # re-exported lazily by __getattr__ below
    from flowledger.instrument.delivery._sender import Sender

__all__ = ["DropReason", "EventSink", "OtlpProtocol", "Sender", "Spool", "SpoolResult"]


def __getattr__(name: str) -> Any:
    # Lazy re-export: the sender brings httpx (tens of milliseconds to import), which
    # ``import flowledger`` must not pay; the pipeline imports it when it starts one.
    if name == "Sender":
        from flowledger.instrument.delivery._sender import Sender

        return Sender
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
