"""The flowledger demo: a receiver, a generated workflow run against it, the history.

``python3 tasks.py demo`` runs this with the project's virtual environment:

1. starts ``flowledger serve`` on a free local port with its own SQLite ledger,
2. generates ``order_intake.py`` from ``examples/order-intake.yaml``,
3. runs it three times (an accepted order, a dry run, an order that fails),
4. shows what the receiver recorded (``flowledger runs`` and ``show``) and
   verifies the ledger's hash chain (``flowledger verify``),
5. says where to look: the web viewer while the receiver runs, and the
   commands to use on the ledger file afterwards.

Everything it writes goes to ``demo-output/`` beside the examples.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "demo-output"
DB = OUT / "flowledger.db"
MODULE = OUT / "order_intake.py"
STARTUP_TIMEOUT_S = 20.0

ORDERS = [
    ("an accepted order", {"order_id": "A-1001", "lines": [{"sku": "apple", "qty": 3}, {"sku": "plum", "qty": 2}]}, []),
    ("the same order as a dry run", {"order_id": "A-1002", "lines": [{"sku": "apple", "qty": 1}]}, ["--dry-run"]),
    (
        "an order with a malformed line (fails in fetch)",
        {"order_id": "A-1003", "lines": [{"sku": "apple", "qty": "three"}]},
        [],
    ),
]


def flowledger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ``flowledger`` command of this environment."""
    env = {**os.environ, "COLUMNS": "140"}
    return subprocess.run(
        [sys.executable, "-m", "flowledger", *args], text=True, capture_output=True, check=check, env=env
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the receiver stopped while starting; run `flowledger serve` to see why")
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"the receiver did not answer at {url} within {STARTUP_TIMEOUT_S:.0f} s")


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for stale in OUT.glob("flowledger.db*"):
        stale.unlink()
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    section(f"starting the receiver at {url} (ledger: {DB.relative_to(HERE.parent)})")
    server = subprocess.Popen(
        [sys.executable, "-m", "flowledger", "serve", "--db", str(DB), "--port", str(port), "--log-level", "warning"]
    )
    try:
        wait_until_up(url, server)

        section("generating the workflow from examples/order-intake.yaml")
        print(flowledger("generate", str(HERE / "order-intake.yaml"), "-o", str(MODULE)).stdout.strip())

        env = {
            **os.environ,
            "FLOWLEDGER_ENDPOINT": url,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            "HOOK_TOKEN": "demo-token",
        }
        for title, payload, flags in ORDERS:
            section(f"running {title}")
            done = subprocess.run(
                [sys.executable, str(MODULE), "--input", json.dumps(payload), *flags],
                env=env,
                text=True,
                capture_output=True,
            )
            print(f"exit {done.returncode}; output: {done.stdout.strip() or '(none)'}")
            if done.returncode != 0 and done.stderr.strip():
                print("  " + done.stderr.strip().splitlines()[-1])

        section("what the receiver recorded: flowledger runs")
        time.sleep(0.3)  # let the last batch commit
        print(flowledger("runs", "--url", url).stdout.rstrip())
        runs = json.loads(flowledger("runs", "--url", url, "--json").stdout)["runs"]
        if runs:
            failed = next((r for r in runs if r["status"] == "failed"), runs[0])
            section(f"one run in detail: flowledger show {failed['run_id']}")
            print(flowledger("show", failed["run_id"], "--url", url).stdout.rstrip())

        section("checking the ledger: flowledger verify")
        verified = flowledger("verify", "--db", str(DB), check=False)
        print((verified.stdout + verified.stderr).strip())

        section("where to look")
        print(f"  web viewer:  {url}/   (while the receiver runs)")
        print(f"  the ledger:  {DB}")
        print(f"  later:       flowledger serve --db {DB}   then open http://127.0.0.1:4318/")
        print(f"               flowledger runs --db {DB}    flowledger export --format jsonl --db {DB}")
        if sys.stdin.isatty():
            print("\nThe receiver keeps running; press Ctrl-C to stop it.")
            try:
                server.wait()
            except KeyboardInterrupt:
                pass
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
