"""The delivery path is safe across fork: no import left to a worker thread, no lock inherited held."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.instrument._sender_support import REPO_ROOT, child_env, closed_port_url, recorder

CHILD_TIMEOUT_S = 60.0

_IMPORTS_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from flowledger.instrument._config import Settings
    from flowledger.instrument._sender import Sender

    before = set(sys.modules)
    for url in sys.argv[1:3]:
        settings = Settings(endpoint=url, spool_dir=Path(sys.argv[3]), max_retries=0, request_timeout_s=5.0)
        sender = Sender(settings, export_spans=True)
        sender.submit({"v": 1, "kind": "heartbeat", "run_id": "r", "data": {}}, 100)
        sender.flush(10.0)
        sender.shutdown(1.0)
    print(json.dumps(sorted(set(sys.modules) - before)))
    """
)


def test_worker_threads_import_nothing(tmp_path: Path) -> None:
    """Building the HTTP client and posting (answered or refused) imports no module the sender did not import."""
    with recorder() as rec:
        done = subprocess.run(
            [sys.executable, "-c", _IMPORTS_CHILD, rec.url, closed_port_url(), str(tmp_path / "spool")],
            cwd=REPO_ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr
        assert rec.requests >= 1
    assert json.loads(done.stdout) == []
