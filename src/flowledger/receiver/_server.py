"""Running the receiver with uvicorn (what ``flowledger serve`` does)."""

from __future__ import annotations

import logging
import os

import uvicorn

from flowledger.receiver._app import create_app
from flowledger.receiver._config import ReceiverConfig

__all__ = ["serve"]


def serve(config: ReceiverConfig, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve until interrupted. Access logs stay off: they would only repeat what metrics count."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(os.environ.get("FLOWLEDGER_RECEIVER_SHUTDOWN_S", "10")),
    )
