"""Building the sinks that ``settings.sinks`` names (``FLOWLEDGER_SINKS``).

Each sink gets its own queue, worker and spool folder, so a slow or absent
destination never holds up another: the receiver keeps ``spool_dir``
itself; an OTLP sink spools under ``spool_dir/otlp-<hash of its URL>``, a
JSONL sink under ``spool_dir/jsonl-<hash of its path>`` (each capped at
``spool_max_bytes``). When an ``otlp`` sink is chosen beside the receiver,
the receiver sink exports no spans of its own, so no span goes out twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from flowledger.instrument._config import Settings, SinkKind, SinkSpec
from flowledger.instrument.delivery._sink import EventSink
from flowledger.instrument.delivery._spool import canonical_url

__all__ = ["build_sinks", "sink_spool_dir"]


def sink_spool_dir(settings: Settings, spec: SinkSpec) -> Path:
    """The spool folder of one sink (the receiver's is ``spool_dir`` itself)."""
    if spec.kind is SinkKind.RECEIVER:
        return settings.spool_dir
    # One folder per destination however its URL is spelled (the batches' tags are of the same canonical form).
    if spec.kind is SinkKind.OTLP:
        target = canonical_url(settings.traces_url)
    else:
        target = str(spec.path and spec.path.resolve())
    digest = hashlib.sha256(target.encode()).hexdigest()[:12]
    return settings.spool_dir / f"{spec.kind}-{digest}"


def build_sinks(
    settings: Settings, *, on_error: Callable[[str, BaseException], None]
) -> tuple[tuple[str, EventSink], ...]:
    """One sink per entry of ``settings.sinks``, named as written (``jsonl:PATH``).

    A sink that cannot start is reported through ``on_error`` and left out; the others still run.
    """
    built: list[tuple[str, EventSink]] = []
    kinds = {spec.kind for spec in settings.sinks}
    for spec in settings.sinks:
        try:
            sink: EventSink
            if spec.kind is SinkKind.RECEIVER:
                from flowledger.instrument.delivery._sender import Sender

                sink = Sender(settings, export_spans=settings.export_spans and SinkKind.OTLP not in kinds)
            elif spec.kind is SinkKind.OTLP:
                from flowledger.instrument.delivery._otlp_sink import OtlpSender

                sink = OtlpSender(settings, spool_dir=sink_spool_dir(settings, spec))
            elif spec.kind is SinkKind.JSONL:
                from flowledger.instrument.delivery._jsonl import JsonlSender

                assert spec.path is not None  # parse_sinks gives every jsonl sink its file
                sink = JsonlSender(settings, spec.path, spool_dir=sink_spool_dir(settings, spec))
            else:
                from flowledger.instrument.delivery._memory import MemorySink

                sink = MemorySink(settings.queue_max_items)
        except Exception as exc:
            on_error(f"sink_start_{spec.kind}", exc)
            continue
        built.append((str(spec), sink))
    return tuple(built)
