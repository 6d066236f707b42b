"""What `dynakv cluster transfers` prints (cli/transfers_view.py), from a reply built by hand."""

from __future__ import annotations

import json

from dynakv.cli.transfers_view import format_bytes, progress_bar, settled, transfers_json, transfers_lines
from dynakv.protocol.cluster_admin_messages import ClusterTransfersReply, TransferInfo
from dynakv.protocol.transfer_progress_messages import NodeAnswer, NodeTransfers, OutboundProgress

CARRYING = OutboundProgress("ownership", "m4", 3, "running", 1234, 3_250_000, 2600)
NEIGHBOUR = OutboundProgress("ownership", "m4", 4, "running", 100, 100_000, 800)
HINTED = OutboundProgress("hinted", "m1", 7, "paused", 20, 20_000, None)
REPLY = ClusterTransfersReply(
    7,
    (
        TransferInfo(3, "m1", "m4", False),
        TransferInfo(5, "m2", "m4", True),
        TransferInfo(9, "m1", "m5", False),
        TransferInfo(11, "m1", "m5", False),
    ),
    (
        NodeTransfers("m1", NodeAnswer.ANSWERED, (CARRYING, NEIGHBOUR)),
        NodeTransfers("m2", NodeAnswer.ANSWERED, (HINTED,), ((9, "m5"),)),
        NodeTransfers("m5", NodeAnswer.NO_ANSWER),
        NodeTransfers("m6", NodeAnswer.UNREACHABLE),
    ),
)


def test_bars_and_sizes() -> None:
    assert progress_bar(0, 10) == "[..........]"
    assert progress_bar(47, 10) == "[####......]"
    assert progress_bar(100, 10) == "[##########]"
    assert [format_bytes(n) for n in (0, 1023, 1024, 3_250_000, 5 << 30)] == [
        "0 B",
        "1023 B",
        "1.0 KB",
        "3.1 MB",
        "5.0 GB",
    ]


def test_each_move_has_a_line_with_its_progress_and_a_summary_ends() -> None:
    lines = transfers_lines(REPLY)
    assert lines[0] == "ring version 7: 4 ownership moves, 3 pending"
    assert lines[1].split() == [
        "partition", "3", "m1", "->", "m4", "[#########...........]", "47%", "1234/2600", "keys", "3.1", "MB",
        "(sent", "by", "m1)",
    ]  # fmt: skip
    assert lines[2].split()[-1] == "complete"
    assert lines[3].endswith("sent by m2, waiting for its other transfers")
    assert lines[4].endswith("waiting")
    assert lines[5] == "other transfers under way:"
    assert "partition 4  ownership  [##.................." in lines[6] and "100/800 keys" in lines[6]
    # The total of a hinted transfer is unknown: counts, no bar, no percentage.
    assert lines[7].endswith("partition 7  hinted  20 keys 19.5 KB (paused)")
    assert lines[8] == "not in this view: m5 (no answer), m6 (unreachable)"
    assert lines[9] == (
        "summary: 1/4 moves complete; 3 transfers under way, 1354 keys 3.2 MB acknowledged; "
        "2 member(s) did not answer"
    )


def test_nothing_under_way() -> None:
    quiet = ClusterTransfersReply(3, (), (NodeTransfers("m1", NodeAnswer.ANSWERED),))
    assert transfers_lines(quiet) == [
        "ring version 3: 0 ownership moves, 0 pending",
        "summary: 0/0 moves complete; no transfer under way; every member answered",
    ]
    # --watch stops here, not while a move is listed or any transfer (hinted too) still runs.
    assert settled(quiet) and not settled(REPLY)
    handing_off = ClusterTransfersReply(3, (), (NodeTransfers("m2", NodeAnswer.ANSWERED, (HINTED,)),))
    assert not settled(handing_off)


def test_json_gives_the_numbers() -> None:
    view = json.loads(json.dumps(transfers_json(REPLY)))
    assert view["ring_version"] == 7 and view["transfers_pending"] == 3
    first, complete, sent, waiting = view["moves"]
    assert first == {
        "partition": 3, "from": "m1", "to": "m4", "complete": False, "state": "running", "sender": "m1",
        "keys_acked": 1234, "keys_total": 2600, "bytes_acked": 3_250_000, "percent": 47,
    }  # fmt: skip
    assert (complete["state"], complete["keys_acked"]) == ("complete", None)
    assert (sent["state"], sent["sender"], waiting["state"]) == ("sent", "m2", "waiting")
    assert [(t["node"], t["kind"], t["partition"], t["percent"]) for t in view["other_transfers"]] == [
        ("m1", "ownership", 4, 12),
        ("m2", "hinted", 7, None),
    ]
    assert view["nodes"] == {"m1": "answered", "m2": "answered", "m5": "no answer", "m6": "unreachable"}
    assert view["summary"] == {
        "moves": 4,
        "moves_complete": 1,
        "transfers_running": 3,
        "keys_acked": 1354,
        "keys_total": 3400,
        "keys_total_unknown": 1,
        "bytes_acked": 3_370_000,
        "no_answer": ["m5", "m6"],
    }
