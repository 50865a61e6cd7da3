"""A client process for the concurrency and crash tests.

``python -m tests.receiver._client_proc URL RUNS BATCH`` builds RUNS typical
runs, posts them in batches of BATCH events (retrying every batch until the
receiver answers 200, through refused connections, resets and 503s), and
prints a JSON summary: the run ids, the event count, and how many retries it
needed.
"""

from __future__ import annotations

import json
import sys
import time

import httpx

from tests.receiver._support import Producer, typical_run

RETRY_PAUSE_S = 0.05
GIVE_UP_AFTER_S = 90.0


def main() -> None:
    url, runs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    producer = Producer()
    built = [typical_run(producer) for _ in range(runs)]
    events = [e for run in built for e in run.events]
    retries = 0
    accepted = 0
    deadline = time.monotonic() + GIVE_UP_AFTER_S
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            while True:
                if time.monotonic() > deadline:
                    sys.exit("gave up: the receiver never took a batch")
                try:
                    answer = client.post(f"{url}/v1/events", json={"events": chunk})
                except httpx.TransportError:
                    retries += 1
                    time.sleep(RETRY_PAUSE_S)
                    continue
                if answer.status_code == 200:
                    body = answer.json()
                    if body["rejected"]:
                        sys.exit(f"rejected: {body['rejected'][:3]}")
                    accepted += body["accepted"]
                    break
                retries += 1
                time.sleep(RETRY_PAUSE_S)
            print(json.dumps({"progress": start + len(chunk)}), flush=True)
    summary = {"run_ids": [r.run_id for r in built], "events": len(events), "accepted": accepted, "retries": retries}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
