"""`/stats` and `/metrics` from the node's counters and a `RequestMetrics`, without sockets."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from dynakv.api.riak_stats import RIAK_KV_VERSION, metrics_response, stats_document, stats_response


class FakeMetrics:
    def ops(self) -> Sequence[str]:
        return ["get", "list_keys"]

    def latency_us(self, op: str) -> Mapping[str, float]:
        base = 1000.0 if op == "get" else 0.0
        return {"mean": base + 0.4, "median": base, "95": base * 2, "99": base * 3, "100": base * 4}

    def siblings(self) -> Mapping[str, float]:
        return {"mean": 1.25, "median": 1, "95": 2, "99": 2, "100": 2}

    def failures(self) -> Mapping[str, int]:
        return {"timeout": 2}

    def pending_requests(self) -> int:
        return 5

    def exposition(self) -> tuple[str, bytes]:
        return "text/plain; version=0.0.4", b"dynakv_requests_total{op=\"get\"} 1.0\n"


COUNTERS = {
    "requests.GetRequest": 7,
    "requests.PutRequest": 3,
    "read_repairs": 2,
    "hints.pending": 4,
    "transfers.active": 2,
    "transfers.pending": 5,
    "transfer.entries_received": 9,
    "transfer.entries_sent.ownership": 30,
    "transfer.bytes_sent.ownership": 3100,
    "transfer.entries_acked.ownership": 25,
    "transfer.bytes_acked.ownership": 2500,
    "transfer.entries_acked.hinted": 3,
    "ownership.cleaned_keys": 9,
}


def test_stats_without_metrics_keeps_the_counts() -> None:
    assert stats_document(COUNTERS, None) == {
        "riak_kv_version": RIAK_KV_VERSION,
        "gets": 7,
        "puts": 3,
        "deletes": 0,
        "read_repairs": 2,
        "pending_hints": 4,
        "transfers": 2,
        "transfers_active": 2,
        "transfers_pending": 5,
        "transfer_keys_received": 9,
        "transfer_ownership_keys_sent": 30,
        "transfer_ownership_bytes_sent": 3100,
        "transfer_ownership_keys_acked": 25,
        "transfer_ownership_bytes_acked": 2500,
        "transfer_hinted_keys_sent": 0,
        "transfer_hinted_bytes_sent": 0,
        "transfer_hinted_keys_acked": 3,
        "transfer_hinted_bytes_acked": 0,
        "transfer_repair_keys_sent": 0,
        "transfer_repair_bytes_sent": 0,
        "transfer_repair_keys_acked": 0,
        "transfer_repair_bytes_acked": 0,
        "transfer_cleanup_keys_sent": 0,
        "transfer_cleanup_bytes_sent": 0,
        "transfer_cleanup_keys_acked": 0,
        "transfer_cleanup_bytes_acked": 0,
        "ownership_cleanup_pending": 0,
        "ownership_cleaned_keys": 9,
    }


def test_stats_with_metrics_uses_riak_names() -> None:
    response = stats_response(COUNTERS, FakeMetrics())
    assert (response.status, response.header("Content-Type")) == (200, "application/json")
    stats = json.loads(response.body)
    assert stats["riak_kv_version"] == "2.0.0"
    assert stats["gets"] == 7
    assert [stats[f"node_get_fsm_time_{p}"] for p in ("mean", "median", "95", "99", "100")] == [
        1000, 1000, 2000, 3000, 4000,
    ]  # fmt: skip
    assert stats["node_put_fsm_time_100"] == 0
    assert stats["node_get_fsm_siblings_mean"] == 1.25
    assert stats["node_get_fsm_siblings_100"] == 2
    assert set(stats["latency_ms"]) == {"get", "put", "delete", "list_keys"}
    assert stats["latency_ms"]["get"]["95"] == 2.0
    assert stats["failures"] == {
        "bad_request": 0, "unavailable": 0, "timeout": 2, "overloaded": 0, "storage": 0,
    }  # fmt: skip
    assert stats["pending_requests"] == 5
    assert (stats["pending_hints"], stats["transfers"], stats["transfers_pending"]) == (4, 2, 5)


def test_metrics_response() -> None:
    response = metrics_response(FakeMetrics())
    assert (response.status, response.header("Content-Type")) == (200, "text/plain; version=0.0.4")
    assert response.body.startswith(b"dynakv_requests_total")
    assert metrics_response(None).status == 404

