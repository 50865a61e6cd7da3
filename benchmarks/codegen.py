#!/usr/bin/env python3
"""Codegen benchmarks: ``python benchmarks/codegen.py`` prints the figures.

1. Generation time of a 500-node definition (parse, validate, render, check),
   cold (first call: imports and template compile) and warm (median).
2. Per-node cost of the generated runtime against calling the same functions
   by hand, for async and sync node functions, with recording on (events kept
   in memory by ``flowledger.testing``, so no network is measured) and with
   ``FLOWLEDGER_DISABLED``-style recording off (the scheduler alone).
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("FLOWLEDGER_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("FLOWLEDGER_EXPORT_SPANS", "0")

GENERATION_NODES: Final = 500
GENERATION_REPEATS: Final = 15
CHAIN_NODES: Final = 200
FAN_OUT_NODES: Final = 500
RUNTIME_REPEATS: Final = 7


def _big_definition(nodes: int) -> str:
    lines = ["flowledger: 1", "workflow: {id: big, name: A 500-node workflow}", f"output: n{nodes - 1}", "nodes:"]
    for i in range(nodes):
        lines.append(f"  - id: n{i}")
        lines.append(f"    call: bench.steps.group{i % 7}:step_{i}")
        needs = [f"n{j}" for j in (i - 1, i - 3, i - 10) if j >= 0]
        if needs:
            lines.append(f"    needs: [{', '.join(needs)}]")
        if i % 5 == 0:
            lines.append(f"    with: {{label: 'node {i}', weights: [1, 2, 3], token: {{env: TOKEN_{i}}}}}")
        if i % 4 == 0:
            lines.append("    retry: {attempts: 3, backoff_s: 0.1}")
            lines.append("    timeout_s: 5")
    return "\n".join(lines) + "\n"


def bench_generation() -> None:
    from flowledger.codegen import _load, _render, _validate, generate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(_big_definition(GENERATION_NODES))
        start = time.perf_counter()
        source = generate(path)
        cold_s = time.perf_counter() - start
        totals, parse, check, render = [], [], [], []
        for _ in range(GENERATION_REPEATS):
            t0 = time.perf_counter()
            doc = _load.load_definition(path)
            t1 = time.perf_counter()
            model = _validate.validate(doc)
            t2 = time.perf_counter()
            _render.render(model)
            t3 = time.perf_counter()
            parse.append(t1 - t0)
            check.append(t2 - t1)
            render.append(t3 - t2)
            totals.append(t3 - t0)
    ms = 1000.0
    print(f"generation of a {GENERATION_NODES}-node definition ({len(source.splitlines())} lines of output):")
    print(f"  cold (first call, imports + template compile): {cold_s * ms:8.1f} ms")
    parse_ms, check_ms, render_ms = (statistics.median(x) * ms for x in (parse, check, render))
    print(f"  warm median: {statistics.median(totals) * ms:8.1f} ms")
    print(f"    parse YAML {parse_ms:.1f} ms, validate {check_ms:.1f} ms, render + AST check {render_ms:.1f} ms")


async def _inc(value: int) -> int:
    return value + 1


def _inc_sync(value: int) -> int:
    return value + 1


def _chain(fn_name: str) -> Any:
    from flowledger import workflow as fw

    call = fw.Call("__main__", fn_name)
    nodes = tuple(fw.Node(f"n{i}", call=call, needs=(f"n{i - 1}",) if i else ()) for i in range(CHAIN_NODES))
    return fw.Workflow(id="chain", nodes=nodes, output=f"n{CHAIN_NODES - 1}")


def _fan_out(fn_name: str, width: int) -> Any:
    from flowledger import workflow as fw

    call = fw.Call("__main__", fn_name)
    nodes: tuple[fw.Node, ...] = (fw.Node("root", call=call),)
    nodes += tuple(fw.Node(f"n{i}", call=call, needs=("root",)) for i in range(width))
    return fw.Workflow(id="fan", nodes=nodes, output="root")


def _best(run: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(RUNTIME_REPEATS):
        start = time.perf_counter()
        asyncio.run(run())  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_runtime() -> None:
    from flowledger.instrument import _pipeline
    from flowledger.testing import capture_events
    from flowledger.workflow import execute

    async def by_hand_async() -> int:
        value = 0
        for _ in range(CHAIN_NODES):
            value = await _inc(value)
        return value

    async def by_hand_sync() -> int:
        value = 0
        for _ in range(CHAIN_NODES):
            value = await asyncio.to_thread(_inc_sync, value)
        return value

    async def plain_sync() -> int:
        value = 0
        for _ in range(CHAIN_NODES):
            value = _inc_sync(value)
        return value

    print(f"\nruntime per node, a chain of {CHAIN_NODES} nodes (median of {RUNTIME_REPEATS} runs):")
    us = 1e6 / CHAIN_NODES
    for label, fn_name, hand, hand_label in (
        ("async node functions", "_inc", by_hand_async, "awaiting them by hand"),
        ("sync node functions", "_inc_sync", by_hand_sync, "asyncio.to_thread by hand"),
    ):
        workflow = _chain(fn_name)
        hand_s = _best(hand)
        with capture_events():
            recorded_s = _best(functools.partial(execute, workflow, 0))
        settings = _pipeline.pipeline().settings
        _pipeline.configure(disabled=True)
        try:
            unrecorded_s = _best(functools.partial(execute, workflow, 0))
        finally:
            _pipeline._create(settings)
        print(f"  {label}: {hand_label} {hand_s * us:7.1f} µs/node; generated runtime {recorded_s * us:7.1f} µs/node "
              f"recorded, {unrecorded_s * us:7.1f} µs/node with recording disabled "
              f"(overhead {(recorded_s - hand_s) * us:.1f} / {(unrecorded_s - hand_s) * us:.1f} µs/node)")  # fmt: skip
    print(f"  (a plain sync call in a loop costs {_best(plain_sync) * us:.2f} µs/node)")
    wide = _fan_out("_inc", FAN_OUT_NODES)
    with capture_events():
        fan_s = _best(functools.partial(execute, wide, 0))
    per_node_us = fan_s * 1e6 / (FAN_OUT_NODES + 1)
    print(f"  a fan-out of {FAN_OUT_NODES} concurrent async nodes: {per_node_us:.1f} µs/node recorded")


if __name__ == "__main__":
    sys.modules.setdefault("__main__", sys.modules[__name__])
    bench_generation()
    bench_runtime()
