"""Full capture and resume: what they cost beside what they stand next to.

    python benchmarks/resume.py [--repeats 200] [--nodes 50] [--output-kib 64]

1. SDK: one node attempt whose output is ``--output-kib`` KiB of JSON, with
   ``capture="full"`` against the default preview capture (the reference),
   events kept in memory (``flowledger.testing.capture_events``): median
   microseconds per attempt and the ratio.
2. Store: ``resume_evidence`` of a run of ``--nodes`` nodes captured in
   full (every output hashed, its payload and ledger entry checked, a
   Merkle inclusion proof each) against ``get_run`` of the same run (the
   reference: what ``flowledger show`` reads): median milliseconds and the
   ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.receiver._support import RunEvents  # noqa: E402

import flowledger  # noqa: E402
from flowledger.receiver._config import IngestLimits  # noqa: E402
from flowledger.receiver._validate import prepare_event  # noqa: E402
from flowledger.receiver.store._event import PreparedEvent  # noqa: E402
from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402
from flowledger.testing import capture_events  # noqa: E402


def _attempt_us(mode: str, output: Any, repeats: int) -> float:
    @flowledger.node(capture=mode)
    def produce(_: Any) -> Any:
        return output

    times = []
    with capture_events(), flowledger.run("bench-capture"):
        for _ in range(repeats):
            t0 = time.perf_counter()
            produce(1)
            times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def _full_run(nodes: int, output_kib: int) -> list[dict[str, Any]]:
    run = RunEvents().start()
    for index in range(nodes):
        run.node(f"n{index}")
    run.finish()
    for event in run.events:
        if event["kind"] == "node_finished":
            text = json.dumps({"node": event["data"]["node_id"], "pad": "x" * (output_kib * 1024)})
            event["data"].update(
                output_full=text, output_capture="full", output_sha256=hashlib.sha256(text.encode()).hexdigest()
            )
    return run.events


async def _store_ms(nodes: int, output_kib: int, repeats: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "bench.db")
        await store.open()
        try:
            events = _full_run(nodes, output_kib)
            prepared = [prepare_event(e, i, IngestLimits(), None) for i, e in enumerate(events)]
            assert all(isinstance(p, PreparedEvent) for p in prepared)
            await store.append([p for p in prepared if isinstance(p, PreparedEvent)])
            run_id = events[0]["run_id"]
            evidence, reference = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                answer = await store.resume_evidence(run_id)
                evidence.append((time.perf_counter() - t0) * 1e3)
                assert answer is not None
                assert all(n["problem"] is None for n in answer["nodes"])
                t0 = time.perf_counter()
                await store.get_run(run_id)
                reference.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(evidence), statistics.median(reference)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--output-kib", type=int, default=64)
    args = parser.parse_args()
    output = {"rows": ["x" * 1000 for _ in range(args.output_kib)]}
    preview = _attempt_us("preview", output, args.repeats)
    full = _attempt_us("full", output, args.repeats)
    print(f"node attempt, {args.output_kib} KiB output (median of {args.repeats}):")
    print(f"  capture=preview (reference) {preview:9.1f} us")
    print(f"  capture=full                {full:9.1f} us   ratio {full / preview:.2f}x")
    evidence, reference = asyncio.run(_store_ms(args.nodes, 4, max(args.repeats // 10, 5)))
    print(f"run of {args.nodes} nodes, 4 KiB outputs captured in full (median):")
    print(f"  get_run (reference)         {reference:9.2f} ms")
    print(f"  resume_evidence             {evidence:9.2f} ms   ratio {evidence / reference:.2f}x")


if __name__ == "__main__":
    main()
