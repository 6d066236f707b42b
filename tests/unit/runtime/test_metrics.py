"""The runtime's request metrics (runtime/metrics.py) with a fake clock: windows, percentiles and the
Prometheus exposition of one node's own registry."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from dynakv.core.objects import Content
from dynakv.protocol.messages import (
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    GetReply,
    GetRequest,
    ListBucketsRequest,
    ListReply,
)
from dynakv.runtime.metrics import Metrics, percentiles


class FakeClock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, body = metrics.exposition()
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def reply_with(siblings: int) -> GetReply:
    return GetReply(True, tuple(Content(b"v%d" % i, last_modified_ms=0) for i in range(siblings)), b"")


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles([]) == {"mean": 0, "median": 0, "95": 0, "99": 0, "100": 0}
    assert percentiles(range(100, 0, -1)) == {"mean": 50.5, "median": 50, "95": 95, "99": 99, "100": 100}
    assert percentiles([7]) == {"mean": 7, "median": 7, "95": 7, "99": 7, "100": 7}


def test_latencies_siblings_and_failures() -> None:
    clock, counters = FakeClock(), Counter({"read_repairs": 1, "hints.pending": 2})
    metrics = Metrics(counters, lambda: 3, now_ns=clock)
    for ref, (micros, siblings) in enumerate([(100, 1), (300, 2), (200, 0)]):
        metrics.started(ref, GetRequest(b"b", b"k"))
        clock.ns += micros * 1000
        found = reply_with(siblings) if siblings else GetReply(False, (), b"")
        metrics.finished(ref, found)
    metrics.started(10, DeleteRequest(b"b", b"k"))
    metrics.started(11, ListBucketsRequest())
    clock.ns += 5_000
    metrics.finished(11, ListReply(()))
    metrics.finished(10, Failure(FailureKind.TIMEOUT, "slow"))
    metrics.finished(99, DeleteReply())  # a ref never started: ignored
    assert metrics.latency_us("get") == {"mean": 200, "median": 200, "95": 300, "99": 300, "100": 300}
    assert metrics.latency_us("delete")["100"] == 5
    assert metrics.latency_us("put") == {"mean": 0, "median": 0, "95": 0, "99": 0, "100": 0}
    assert list(metrics.ops()) == ["delete", "get", "list_buckets"]
    assert metrics.siblings() == {"mean": 1.5, "median": 1, "95": 2, "99": 2, "100": 2}  # not-found: none
    assert metrics.failures() == {"timeout": 1}
    assert metrics.pending_requests() == 3
    got = samples(metrics)
    assert got[("dynakv_requests_total", (("op", "get"),))] == 3
    assert got[("dynakv_requests_total", (("op", "put"),))] == 0
    assert got[("dynakv_request_duration_seconds_count", (("op", "get"),))] == 3
    assert abs(got[("dynakv_request_duration_seconds_sum", (("op", "get"),))] - 0.0006) < 1e-12
    assert got[("dynakv_request_failures_total", (("kind", "timeout"), ("op", "delete")))] == 1
    assert (got[("dynakv_get_siblings_count", ())], got[("dynakv_get_siblings_sum", ())]) == (2, 3)
    assert got[("dynakv_node_events_total", (("event", "read_repairs"),))] == 1
    assert ("dynakv_node_events_total", (("event", "hints.pending"),)) not in got
    assert got[("dynakv_pending_hints", ())] == 2
    assert got[("dynakv_transfers_active", ())] == 0
    assert got[("dynakv_pending_requests", ())] == 3


def test_transfer_levels_and_totals_by_kind_are_read_at_scrape_time() -> None:
    counters: Counter[str] = Counter({"transfers.active": 3, "transfers.pending": 7})
    metrics = Metrics(counters, lambda: 0, now_ns=FakeClock())
    counters["transfer.entries_acked.ownership"] += 40
    counters["transfer.bytes_sent.hinted"] += 512
    counters["transfer.entries_received"] += 6
    got = samples(metrics)
    assert (got[("dynakv_transfers_active", ())], got[("dynakv_transfers_pending", ())]) == (3, 7)
    assert got[("dynakv_transfer_keys_acked_total", (("kind", "ownership"),))] == 40
    assert got[("dynakv_transfer_keys_acked_total", (("kind", "repair"),))] == 0
    assert got[("dynakv_transfer_bytes_sent_total", (("kind", "hinted"),))] == 512
    assert got[("dynakv_transfer_keys_sent_total", (("kind", "ownership"),))] == 0
    assert got[("dynakv_transfer_bytes_acked_total", (("kind", "ownership"),))] == 0
    # Shown once: in their families, not again among the events; other transfer counters are events.
    assert ("dynakv_node_events_total", (("event", "transfer.entries_acked.ownership"),)) not in got
    assert got[("dynakv_node_events_total", (("event", "transfer.entries_received"),))] == 6
    counters["transfer.entries_acked.ownership"] += 2
    counters["transfers.pending"] = 0
    got = samples(metrics)
    assert got[("dynakv_transfer_keys_acked_total", (("kind", "ownership"),))] == 42
    assert got[("dynakv_transfers_pending", ())] == 0


def test_windows_are_bounded_and_registries_are_per_node() -> None:
    clock = FakeClock()
    one, two = Metrics(Counter(), lambda: 0, clock, window=4), Metrics(Counter(), lambda: 0, clock)
    for ref in range(10):
        one.started(ref, GetRequest(b"b", b"k"))
        clock.ns += (ref + 1) * 1000
        one.finished(ref, reply_with(1))
    assert one.latency_us("get")["median"] == 8  # only the last four (7..10 us) are kept
    assert one.latency_us("get")["mean"] == 8.5
    assert samples(one)[("dynakv_requests_total", (("op", "get"),))] == 10
    assert samples(two)[("dynakv_requests_total", (("op", "get"),))] == 0
