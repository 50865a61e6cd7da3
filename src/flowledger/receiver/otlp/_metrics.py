"""Metrics received over OTLP: validation into stored series and points.

Every data point of a gauge, sum, histogram, exponential histogram or
summary becomes a :class:`MetricPointRow` of its series (resource, scope,
metric name, type, unit and the point's attributes). A point is refused (and
counted in the partial-success answer as a rejected data point) when its
time is missing or 2**63 ns or later, a gauge or sum point has no value, or a
histogram's bucket counts do not fit its bounds, or a summary's quantile is
not a finite number within [0, 1]; its siblings are still stored. A sum or
(exponential) histogram whose ``aggregationTemporality`` is not a value of
the OTLP enum (0 to 2) has every point refused, named once at the metric;
the other metrics of the request are still stored. Gauges
and sums keep their value as sent: an ``asInt`` as an exact integer, an
``asDouble`` as a float; the other types keep their counts, sums and
buckets as JSON (counts as integers). A series is identified by the
canonical form of its resource and point attributes (object keys sorted at
every level), so the same resource or attributes sent in another order are
the same series; its stored resource is the one first sent. A NaN or infinite value, sum or bound is kept and
answered as the string OTLP's JSON mapping writes ("NaN", "Infinity",
"-Infinity"), never as a bare JSON constant.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.proto.metrics.v1 import metrics_pb2

from flowledger.receiver.otlp._spans import MAX_TIME_NS, attributes_json, dumps, json_safe_number, rejection_message
from flowledger.receiver.store._otlp_metrics import MetricPointRow, MetricSeries, series_key

__all__ = ["MetricBatch", "points_from_request"]

_TYPES: Final = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
_JSON_NAMES: Final = {
    "gauge": "gauge",
    "sum": "sum",
    "histogram": "histogram",
    "exponential_histogram": "exponentialHistogram",
    "summary": "summary",
}
_TEMPORALITIES: Final = frozenset(int(value) for value in metrics_pb2.AggregationTemporality.values())


@dataclass(frozen=True, slots=True)
class MetricBatch:
    """What one metrics export request held: the valid points and why the others were refused."""

    rows: list[MetricPointRow]
    rejected: int
    problems: list[str]

    @property
    def error_message(self) -> str:
        """The partial-success message: a count and the first few problems."""
        return rejection_message(self.rejected, self.problems, "data point(s)")


def _optional(point: Any, name: str) -> float | str | None:
    return json_safe_number(getattr(point, name)) if point.HasField(name) else None


def _temporality(data: Any) -> tuple[int | None, str | None]:
    """(temporality, problem) of a metric's data: None for a type without one (gauge, summary)."""
    if not hasattr(data, "aggregation_temporality"):
        return None, None
    temporality = int(data.aggregation_temporality)
    if temporality not in _TEMPORALITIES:
        problem = f"aggregationTemporality is {temporality}, not an AggregationTemporality (0 to {max(_TEMPORALITIES)})"
        return temporality, problem
    return temporality, None


def _canonical(value: Any) -> str:
    """JSON text of ``value`` with every object's keys sorted: one text whatever order the attributes came in."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _point_value(kind: str, point: Any) -> tuple[int | float | None, dict[str, Any] | None, str | None]:
    """(value, data, problem) of one data point; an ``asInt`` value stays an int."""
    if kind in {"gauge", "sum"}:
        which = point.WhichOneof("value")
        if which is None:
            return None, None, "the data point has no value (asDouble or asInt)"
        if which == "as_int":
            return int(point.as_int), None, None
        if math.isfinite(point.as_double):
            return point.as_double, None, None
        return None, {"value": json_safe_number(point.as_double)}, None
    if kind == "histogram":
        bounds, counts = list(point.explicit_bounds), list(point.bucket_counts)
        if counts and len(counts) != len(bounds) + 1:
            problem = f"bucketCounts has {len(counts)} entries for {len(bounds)} explicitBounds (needs one more)"
            return None, None, problem
        data = {"count": point.count, "sum": _optional(point, "sum"), "min": _optional(point, "min")}
        data.update(
            max=_optional(point, "max"), bucket_counts=counts, explicit_bounds=[json_safe_number(b) for b in bounds]
        )
        return None, data, None
    if kind == "exponential_histogram":
        data = {"count": point.count, "sum": _optional(point, "sum"), "min": _optional(point, "min")}
        data.update(max=_optional(point, "max"), scale=point.scale, zero_count=point.zero_count)
        for side in ("positive", "negative"):
            buckets = getattr(point, side)
            data[side] = {"offset": buckets.offset, "bucket_counts": list(buckets.bucket_counts)}
        return None, data, None
    for q, quantile in enumerate(point.quantile_values):
        if not 0.0 <= quantile.quantile <= 1.0:  # also false for NaN
            shown = json_safe_number(quantile.quantile)
            return None, None, f"quantileValues[{q}].quantile is {shown}, not a number within [0, 1]"
    quantiles = [{"quantile": q.quantile, "value": json_safe_number(q.value)} for q in point.quantile_values]
    return None, {"count": point.count, "sum": json_safe_number(point.sum), "quantile_values": quantiles}, None


def points_from_request(request: Any, *, project: str | None) -> MetricBatch:
    """Validate and convert the data points of an ``ExportMetricsServiceRequest``."""
    rows: list[MetricPointRow] = []
    problems: list[str] = []
    rejected = 0
    for r, resource_metrics in enumerate(request.resource_metrics):
        resource = attributes_json(resource_metrics.resource.attributes)
        service = resource.get("service.name")
        resource_text, resource_canonical = dumps(resource), _canonical(resource)
        for s, scope_metrics in enumerate(resource_metrics.scope_metrics):
            scope = scope_metrics.scope
            for m, metric in enumerate(scope_metrics.metrics):
                kind = metric.WhichOneof("data")
                if kind not in _TYPES:
                    continue  # no data (or a type newer than this code): nothing to store
                data = getattr(metric, kind)
                place = f"resourceMetrics[{r}].scopeMetrics[{s}].metrics[{m}].{_JSON_NAMES[kind]}"
                temporality, problem = _temporality(data)
                if problem is not None:
                    if data.data_points:  # a metric without points has nothing to reject
                        rejected += len(data.data_points)
                        problems.append(f"{place}: {problem} (its {len(data.data_points)} data point(s) rejected)")
                    continue
                monotonic = bool(data.is_monotonic) if kind == "sum" else None
                for p, point in enumerate(data.data_points):
                    where = f"{place}.dataPoints[{p}]"
                    value, extra, problem = _point_value(kind, point)
                    if problem is None and not point.time_unix_nano:
                        problem = "timeUnixNano is missing"
                    if problem is None and max(point.time_unix_nano, point.start_time_unix_nano) > MAX_TIME_NS:
                        problem = "timeUnixNano is 2**63 or more (past the year 2262)"
                    if problem is not None:
                        rejected += 1
                        problems.append(f"{where}: {problem}")
                        continue
                    attributes = attributes_json(point.attributes)
                    attributes_text = dumps(dict(sorted(attributes.items())))
                    identity = (project, metric.name, kind, metric.unit)
                    scope_id = (scope.name or None, scope.version or None)
                    attributes_canonical = _canonical(attributes)
                    key = series_key(*identity, resource_canonical, *scope_id, attributes_canonical)
                    unsorted_key = None  # the key earlier versions gave it, when another: it may be stored under it
                    if (resource_text, attributes_text) != (resource_canonical, attributes_canonical):
                        unsorted_key = series_key(*identity, resource_text, *scope_id, attributes_text)
                    series = MetricSeries(
                        project=project,
                        name=metric.name,
                        type=kind,
                        unit=metric.unit,
                        description=metric.description,
                        temporality=temporality,
                        monotonic=monotonic,
                        service_name=service if isinstance(service, str) else None,
                        resource=resource_text,
                        scope_name=scope_id[0],
                        scope_version=scope_id[1],
                        attributes=attributes_text,
                        key=key,
                        unsorted_key=unsorted_key,
                    )
                    rows.append(
                        MetricPointRow(
                            series=series,
                            time_ns=int(point.time_unix_nano),
                            start_ns=int(point.start_time_unix_nano) or None,
                            value=value,
                            data=None if extra is None else dumps(extra),
                        )
                    )
    return MetricBatch(rows=rows, rejected=rejected, problems=problems)
