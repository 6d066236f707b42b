"""Transfer peer messages <-> msgpack field lists (tags 12 and 13; wire/codec.py frames them).

A batch is `[12, transfer_id, kind, partition, seq, [[bucket, key, obj], ...], last]`, an ack
`[13, transfer_id, seq, ok]`. The kind travels as its name ("hinted", "ownership", "repair") so a frame
reads the same in a dump as in the code. Decoding trusts nothing and raises DecodeError only;
`codec.decode_peer` turns that into RemoteProtocolError.
"""

from __future__ import annotations

from typing import Any, Final

from dynakv.core.codec import want_bool, want_bytes, want_int, want_list_of, want_str, want_tuple
from dynakv.core.errors import DecodeError
from dynakv.protocol.messages import TransferAck, TransferBatch, TransferEntry, TransferKind
from dynakv.protocol.ports import PARTITION_MAX

TRANSFER_BATCH: Final = 12
TRANSFER_ACK: Final = 13
TRANSFER_TAGS: Final = frozenset({TRANSFER_BATCH, TRANSFER_ACK})

TransferMessage = TransferBatch | TransferAck

_INT64_MAX: Final = (1 << 63) - 1


def transfer_fields(msg: TransferMessage) -> list[Any]:
    """The frame of one transfer message: `[tag, field, ...]`."""
    match msg:
        case TransferBatch(transfer_id, kind, partition, seq, entries, last):
            rows = [[e.bucket, e.key, e.obj] for e in entries]
            return [TRANSFER_BATCH, transfer_id, kind.value, partition, seq, rows, last]
        case TransferAck(transfer_id, seq, ok):
            return [TRANSFER_ACK, transfer_id, seq, ok]
    raise AssertionError(f"not a transfer message: {msg!r}")


def _u64(value: Any, field: str) -> int:
    return want_int(value, field, 0, _INT64_MAX)


def _kind(value: Any) -> TransferKind:
    name = want_str(value, "kind")
    try:
        return TransferKind(name)
    except ValueError:
        raise DecodeError(f"kind: unknown transfer kind {name!r}") from None


def _entry(value: Any, field: str) -> TransferEntry:
    bucket, key, obj = want_tuple(value, field, 3)
    return TransferEntry(
        want_bytes(bucket, f"{field}.bucket"),
        want_bytes(key, f"{field}.key"),
        want_bytes(obj, f"{field}.obj"),
    )


def decode_transfer(tag: int, f: list[Any]) -> TransferMessage:
    """The transfer message of a frame's tag and fields; DecodeError for anything malformed."""
    if tag == TRANSFER_BATCH and len(f) == 6:
        return TransferBatch(
            _u64(f[0], "transfer_id"),
            _kind(f[1]),
            want_int(f[2], "partition", 0, PARTITION_MAX),
            _u64(f[3], "seq"),
            tuple(want_list_of(f[4], "entries", _entry)),
            want_bool(f[5], "last"),
        )
    if tag == TRANSFER_ACK and len(f) == 3:
        return TransferAck(_u64(f[0], "transfer_id"), _u64(f[1], "seq"), want_bool(f[2], "ok"))
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a transfer message")
