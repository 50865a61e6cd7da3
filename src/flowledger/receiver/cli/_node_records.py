"""What ``flowledger show`` prints of costs by category, custom metrics and artifacts.

Plain lines (``--json`` has the records whole): the run's cost broken down
by category under its totals, then, per attempt that has any, its cost
breakdown, its metrics and its artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["breakdown_text", "node_record_lines", "usd_text"]

_SHA_CHARS: Final = 12
"""Leading hex digits of a sha256 shown (``--json`` has all 64)."""


def usd_text(nanos: int) -> str:
    """Exact dollars from nano-dollars, without trailing zeros: ``$0.0036``, ``$0``."""
    whole, frac = divmod(nanos, 1_000_000_000)
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
    return f"${text}"


def breakdown_text(breakdown: Mapping[str, Any] | None) -> str:
    """``tokens_in 1200 ($0.0036), external_requests:stripe 3 ($0.09)``; empty without a breakdown."""
    if not breakdown:
        return ""
    parts = []
    for key, entry in breakdown.items():
        count, nanos = entry["count"], entry["usd_nanos"]
        if key == "other":
            parts.append(f"other {usd_text(nanos)}")
        else:
            parts.append(f"{key} {count}" + (f" ({usd_text(nanos)})" if nanos else ""))
    return ", ".join(parts)


def _attempt_name(node: Mapping[str, Any]) -> str:
    item = node.get("item")
    suffix = f"[{item}]" if item is not None else ""
    return f"{node.get('node_id')}{suffix} #{node.get('attempt')}"


def _metric_text(metric: Mapping[str, Any]) -> str:
    labels = metric.get("labels") or {}
    label_text = "{" + ", ".join(f"{k}={v}" for k, v in labels.items()) + "}" if labels else ""
    text = f"{metric['name']}{label_text} = {metric['value']:g}"
    if metric.get("count", 1) > 1:
        text += f" (count {metric['count']}, sum {metric['sum']:g}, min {metric['min']:g}, max {metric['max']:g})"
    return text


def _artifact_text(artifact: Mapping[str, Any]) -> str:
    size = artifact.get("size_bytes")
    bits = [str(artifact.get("name"))]
    if artifact.get("media_type"):
        bits.append(str(artifact["media_type"]))
    if size is not None:
        bits.append(f"{size} bytes")
    if artifact.get("sha256"):
        bits.append(f"sha256 {str(artifact['sha256'])[:_SHA_CHARS]}…")
    elif artifact.get("sha256_skipped"):
        bits.append(f"not hashed: {artifact['sha256_skipped']}")
    if artifact.get("uri"):
        bits.append(str(artifact["uri"]))
    return "  ".join(bits)


def node_record_lines(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """For each attempt with a cost breakdown, metrics or artifacts: its name, then one indented line each."""
    lines: list[str] = []
    for node in nodes:
        cost = node.get("cost") or {}
        breakdown = breakdown_text(cost.get("breakdown"))
        metrics = node.get("metrics") or []
        artifacts = node.get("artifacts") or []
        if not (breakdown or metrics or artifacts):
            continue
        lines.append(_attempt_name(node))
        if breakdown:
            lines.append(f"  cost      {breakdown}")
        lines += [f"  metric    {_metric_text(m)}" for m in metrics]
        lines += [f"  artifact  {_artifact_text(a)}" for a in artifacts]
    return lines
