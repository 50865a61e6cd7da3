"""Session-wide test settings: nothing a test emits leaves this machine's temp dirs."""

from __future__ import annotations

import os
import tempfile

# Set before flowledger builds its pipeline: spooled events go to a temp dir, and
# an SDK that is not pointed anywhere sends to a closed local port.
_SPOOL = tempfile.mkdtemp(prefix="flowledger-test-spool-")
os.environ.setdefault("FLOWLEDGER_SPOOL_DIR", _SPOOL)
os.environ.setdefault("FLOWLEDGER_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("FLOWLEDGER_EXPORT_SPANS", "0")
for _name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
    os.environ.pop(_name, None)
