"""A producer process: runs the generated fault workflow ``FAULTS_RUNS`` times, then prints a JSON summary.

``python -m tests.faults._producer MODULE.py`` (``FAULTS_DURATION_S``: keep running that
long, paced by ``FAULTS_PACE_S``, for a soak). Each run prints a line ``{"runs", "s"}``
(the ids of the runs it made, and its time) as it ends, and keeps nothing of it, so a
soak's memory is the SDK's, not this script's lists; the summary ``{"stats", "flushed",
"peak_rss_kib", "done_at"}`` is printed when the runs are done; the harness measures how
long the exit was held after ``done_at``. After the SDK's own exit (its bounded flush
and spool), one more line gives ``{"final_stats"}``.
``FAULTS_CLOCK_SKEW_S`` shifts this process's wall clock (``time.time`` and
``time.time_ns``) to play a producer whose clock is wrong; the monotonic
clock is left alone, as a wrong wall clock leaves it.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import json
import os
import resource
import sys
import time


def _skew_clock(seconds: float) -> None:
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() + seconds
    time.time_ns = lambda: real_time_ns() + int(seconds * 1e9)


def main() -> None:
    skew = float(os.environ.get("FAULTS_CLOCK_SKEW_S", "0"))
    if skew:
        _skew_clock(skew)
    # Registered before flowledger's own exit handler, so it runs after it (atexit runs the last first).
    atexit.register(_final_stats)
    import flowledger
    from tests.faults import _steps

    spec = importlib.util.spec_from_file_location("faults_workflow", sys.argv[1])
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = int(os.environ.get("FAULTS_RUNS", "10"))
    pace_s = float(os.environ.get("FAULTS_PACE_S", "0"))
    duration_s = float(os.environ.get("FAULTS_DURATION_S", "0"))
    until = time.monotonic() + duration_s
    i = 0
    while i < runs or (duration_s and time.monotonic() < until):
        i += 1
        start = time.perf_counter()
        asyncio.run(module.run({"i": i}))
        print(json.dumps({"runs": _steps.RUN_IDS, "s": time.perf_counter() - start}))
        _steps.RUN_IDS.clear()
        if pace_s:
            time.sleep(pace_s)
    flushed = flowledger.flush(timeout_s=float(os.environ.get("FAULTS_FLUSH_S", "0"))) if runs == 0 else None
    summary = {
        "stats": flowledger.stats(),
        "flushed": flushed,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "done_at": time.monotonic(),
    }
    print(json.dumps(summary), flush=True)


def _final_stats() -> None:
    import flowledger

    print(json.dumps({"final_stats": flowledger.stats()}), flush=True)


if __name__ == "__main__":
    main()
