"""Linking OTLP log records that arrived before their run's events, every few seconds.

A record whose run or node attempt is already known is linked when it is
stored; one that came first (the application's log exporter is often faster
than the SDK's event sender) waits, and this task copies it beside its
attempt's lines once the events are in: every ``otlp_link_interval_s``, on
the writer, for records received within the last ``LINK_WINDOW_S``.
"""

from __future__ import annotations

import functools
import time

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._periodic import Periodic
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._otlp_logs import LINK_WINDOW_S
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._time import ts_from_epoch_s

__all__ = ["OtlpLogLinker", "link_once"]


async def link_once(store: Store, writer: Writer) -> int:
    """One linking pass on the writer; how many records it linked."""
    since = ts_from_epoch_s(time.time() - LINK_WINDOW_S)
    return await writer.call(lambda: store.link_otlp_logs(since=since))


class OtlpLogLinker(Periodic):
    """Background task calling :func:`link_once` every ``otlp_link_interval_s`` (never when it is 0)."""

    def __init__(self, store: Store, writer: Writer, config: ReceiverConfig) -> None:
        super().__init__(
            "flowledger-otlp-log-linker",
            config.otlp_link_interval_s,
            functools.partial(link_once, store, writer),
            doing="linking OTLP log records to their runs",
        )
