"""Request metrics of one node, measured where every request passes: `NodeRunner`, for the native
protocol and the HTTP API alike.

Per op ("get", "put", "delete", "list_keys", ...) the runner reports when a request is handed to the
Node (`started`) and when its reply comes out (`finished`); latencies come from the monotonic clock
(`now_ns`, injectable for tests), never from the sans-IO layers. Two views of the same observations:

- bounded sliding windows of the last `window` samples per op (and of the sibling counts of gets),
  sorted on read into Riak's mean/median/95/99/100 for `/stats` (api/riak_stats.py);
- Prometheus objects in a per-node `CollectorRegistry` (never the global one: a test process runs
  several nodes), exposed by `/metrics`: `dynakv_requests_total{op}`,
  `dynakv_request_duration_seconds{op}`, `dynakv_request_failures_total{op,kind}`,
  `dynakv_get_siblings`, and the node's own counters and levels, read at scrape time (transfers:
  `dynakv_transfers_active`, `dynakv_transfers_pending`, `dynakv_transfer_{keys,bytes}_{sent,acked}_total
  {kind}`).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dynakv.protocol.messages import Failure, GetReply, NodeReply, NodeRequest, TransferKind

WINDOW_SAMPLES: Final = 10_000
PERCENTILES: Final = ("mean", "median", "95", "99", "100")
OPS: Final = {
    "GetRequest": "get",
    "PutRequest": "put",
    "DeleteRequest": "delete",
    "ListKeysRequest": "list_keys",
    "ListBucketsRequest": "list_buckets",
    "GetBucketProps": "get_bucket_props",
    "SetBucketProps": "set_bucket_props",
    "ResetBucketProps": "reset_bucket_props",
    "PreflistRequest": "preflist",
}
CORE_OPS: Final = ("get", "put", "delete")
LATENCY_BUCKETS_S: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, math.inf,
)  # fmt: skip
SIBLING_BUCKETS: Final = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, math.inf)
# Node counters that are levels, not counts: exposed as gauges, left out of dynakv_node_events_total.
NODE_LEVELS: Final = {
    "hints.pending": ("dynakv_pending_hints", "Hints held for unreachable replicas, waiting for handoff."),
    "transfers.active": ("dynakv_transfers_active", "Outbound transfers (every kind) this node runs."),
    "transfers.pending": (
        "dynakv_transfers_pending",
        "Ownership moves not yet complete in this node's cluster state.",
    ),
}
# Node counters `transfer.<name>.<kind>` exposed as one counter family each, labelled by kind (and left
# out of dynakv_node_events_total).
TRANSFER_TOTALS: Final = {
    "entries_sent": ("dynakv_transfer_keys_sent", "Keys sent by outbound transfers, by kind."),
    "bytes_sent": ("dynakv_transfer_bytes_sent", "Bytes sent by outbound transfers (resends too), by kind."),
    "entries_acked": ("dynakv_transfer_keys_acked", "Keys of outbound transfers acknowledged, by kind."),
    "bytes_acked": ("dynakv_transfer_bytes_acked", "Bytes of outbound transfers acknowledged, by kind."),
}
_TRANSFER_PREFIXES: Final = tuple(f"transfer.{name}." for name in TRANSFER_TOTALS)


def op_name(request: NodeRequest) -> str:
    name = type(request).__name__
    return OPS.get(name, name)


def percentiles(samples: Iterable[float]) -> dict[str, float]:
    """Mean and nearest-rank median, 95th, 99th and 100th percentiles; zeros without samples."""
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        return dict.fromkeys(PERCENTILES, 0.0)

    def rank(q: float) -> float:
        return float(ordered[max(0, math.ceil(q * n) - 1)])

    return {"mean": sum(ordered) / n, "median": rank(0.5), "95": rank(0.95), "99": rank(0.99), "100": rank(1)}


class _NodeCollector(Collector):
    """The node's counters and levels, read at scrape time (they live in `Node.counters`)."""

    def __init__(self, counters: Mapping[str, int], pending: Callable[[], int]) -> None:
        self._counters = counters
        self._pending = pending

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "dynakv_node_events", "The node's event counters since it started, by name.", labels=["event"]
        )
        for name, value in sorted(self._counters.items()):
            if name not in NODE_LEVELS and not name.startswith(_TRANSFER_PREFIXES):
                events.add_metric([name], value)
        yield events
        yield GaugeMetricFamily(
            "dynakv_pending_requests", "Requests handed to the node and not answered yet.", self._pending()
        )
        for counter, (metric, documentation) in NODE_LEVELS.items():
            yield GaugeMetricFamily(metric, documentation, self._counters.get(counter, 0))
        yield from self._transfer_totals()

    def _transfer_totals(self) -> Iterator[Metric]:
        for name, (metric, documentation) in TRANSFER_TOTALS.items():
            family = CounterMetricFamily(metric, documentation, labels=["kind"])
            for kind in TransferKind:
                family.add_metric([kind.value], self._counters.get(f"transfer.{name}.{kind.value}", 0))
            yield family


class Metrics:
    """One node's request metrics; implements api.riak_stats.RequestMetrics (structurally)."""

    def __init__(
        self,
        counters: Mapping[str, int],
        pending: Callable[[], int],
        now_ns: Callable[[], int] = time.monotonic_ns,
        window: int = WINDOW_SAMPLES,
    ) -> None:
        self._now_ns = now_ns
        self._pending = pending
        self._window = window
        self._started: dict[int, tuple[str, int]] = {}
        self._latency_us: dict[str, deque[int]] = {}
        self._siblings: deque[int] = deque(maxlen=window)
        self._failed: Counter[str] = Counter()
        self.registry = CollectorRegistry()
        self._requests = PromCounter(
            "dynakv_requests", "Requests handed to the node, by op.", ["op"], registry=self.registry
        )
        self._duration = PromHistogram(
            "dynakv_request_duration_seconds", "Time from a request reaching the node to its reply, by op.",
            ["op"], buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )  # fmt: skip
        self._failures = PromCounter(
            "dynakv_request_failures", "Requests answered with a failure, by op and kind.", ["op", "kind"],
            registry=self.registry,
        )  # fmt: skip
        self._get_siblings = PromHistogram(
            "dynakv_get_siblings", "Siblings per get that found a value.", buckets=SIBLING_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        for op in CORE_OPS:  # listed from the start, at 0
            self._requests.labels(op)
            self._duration.labels(op)
        self.registry.register(_NodeCollector(counters, pending))

    # -- observations (from NodeRunner) ---------------------------------------------------------------

    def started(self, ref: int, request: NodeRequest) -> None:
        op = op_name(request)
        self._started[ref] = (op, self._now_ns())
        self._requests.labels(op).inc()

    def finished(self, ref: int, reply: NodeReply) -> None:
        entry = self._started.pop(ref, None)
        if entry is None:
            return
        op, start_ns = entry
        elapsed_ns = max(0, self._now_ns() - start_ns)
        window = self._latency_us.get(op)
        if window is None:
            window = self._latency_us[op] = deque(maxlen=self._window)
        window.append(elapsed_ns // 1000)
        self._duration.labels(op).observe(elapsed_ns / 1e9)
        if isinstance(reply, Failure):
            self._failed[reply.kind.value] += 1
            self._failures.labels(op, reply.kind.value).inc()
        elif isinstance(reply, GetReply) and reply.found and reply.siblings:
            self._siblings.append(len(reply.siblings))
            self._get_siblings.observe(len(reply.siblings))

    # -- reads (api.riak_stats.RequestMetrics) --------------------------------------------------------

    def ops(self) -> Sequence[str]:
        return sorted(op for op, window in self._latency_us.items() if window)

    def latency_us(self, op: str) -> Mapping[str, float]:
        return percentiles(self._latency_us.get(op, ()))

    def siblings(self) -> Mapping[str, float]:
        return percentiles(self._siblings)

    def failures(self) -> Mapping[str, int]:
        return dict(self._failed)

    def pending_requests(self) -> int:
        return self._pending()

    def exposition(self) -> tuple[str, bytes]:
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)
