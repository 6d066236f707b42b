"""What every engine shares: argument checks, the order-preserving data-key encoding, directory helpers.

The data-key encoding (used where an engine has a single byte-ordered key space, i.e. lmdb) is

    partition as 8 bytes big-endian | bucket with 0x00 escaped as 0x00 0xFF | 0x00 0x00 | key

and bytewise order of encoded keys equals the order of `(partition, bucket, key)` tuples. Why: equal
partitions compare equal on their fixed 8 bytes. For two different buckets, take the first position
where they differ: if both have a byte there, the escaped forms agree up to it and then show either the
two bytes themselves (both non-zero) or 0x00 against a non-zero byte, which orders like the raw bytes;
if one bucket is a proper prefix of the other, the shorter one continues with the terminator 0x00 0x00
while the longer continues with a non-zero byte or 0x00 0xFF, both of which sort above it. Equal
buckets yield equal prefixes, and the keys, stored raw at the end, decide. (A plain length prefix would
order buckets by length first, which is why it is not used.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Sequence

from dynakv.protocol.ports import (
    PARTITION_MAX,
    DeleteOp,
    MetaDeleteOp,
    MetaPutOp,
    PutOp,
    StorageError,
    WriteOp,
)

PARTITION_BYTES = 8
_ESCAPE = b"\x00\xff"
_TERMINATOR = b"\x00\x00"
LOCK_FILE_NAME = "dynakv.lock"


def check_partition(partition: int) -> None:
    if not isinstance(partition, int) or isinstance(partition, bool):
        raise TypeError(f"partition must be an int, got {type(partition).__name__}")
    if not 0 <= partition <= PARTITION_MAX:
        raise ValueError(f"partition {partition} is outside [0, {PARTITION_MAX}]")


def check_bytes(what: str, value: object) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes, got {type(value).__name__}")


def check_data_key(partition: int, bucket: bytes, key: bytes) -> None:
    check_partition(partition)
    check_bytes("bucket", bucket)
    check_bytes("key", key)


def check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int, got {limit!r}")


def check_start_after(start_after: tuple[bytes, bytes] | None) -> None:
    if start_after is not None:
        if not isinstance(start_after, tuple) or len(start_after) != 2:
            raise TypeError("start_after must be None or a (bucket, key) tuple")
        check_bytes("start_after bucket", start_after[0])
        check_bytes("start_after key", start_after[1])


def check_op(op: WriteOp) -> None:
    """Raise TypeError/ValueError if one batch op is malformed."""
    if isinstance(op, PutOp):
        check_data_key(op.partition, op.bucket, op.key)
        check_bytes("value", op.value)
    elif isinstance(op, DeleteOp):
        check_data_key(op.partition, op.bucket, op.key)
    elif isinstance(op, MetaPutOp):
        check_bytes("name", op.name)
        check_bytes("value", op.value)
    elif isinstance(op, MetaDeleteOp):
        check_bytes("name", op.name)
    else:
        raise TypeError(f"not a write op: {type(op).__name__}")


def check_ops(ops: Sequence[WriteOp]) -> None:
    for op in ops:
        check_op(op)


def partition_prefix(partition: int) -> bytes:
    return partition.to_bytes(PARTITION_BYTES, "big")


def encode_data_key(partition: int, bucket: bytes, key: bytes) -> bytes:
    """The order-preserving encoding described in the module docstring."""
    return partition_prefix(partition) + bucket.replace(b"\x00", _ESCAPE) + _TERMINATOR + key


def decode_data_key(raw: bytes) -> tuple[int, bytes, bytes]:
    """Invert `encode_data_key`. Inside an escaped bucket every 0x00 is followed by 0xFF, so the first
    0x00 0x00 after the partition is the terminator."""
    end = raw.index(_TERMINATOR, PARTITION_BYTES)
    bucket = raw[PARTITION_BYTES:end].replace(_ESCAPE, b"\x00")
    return int.from_bytes(raw[:PARTITION_BYTES], "big"), bucket, raw[end + len(_TERMINATOR) :]


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string starting with `prefix`; None if there is none
    (the prefix is empty or all 0xFF), meaning "no upper bound"."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def fsync_dir(path: str) -> None:
    """Make the entries of directory `path` (files created or renamed in it) survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_data_dir(path: str) -> None:
    """Create the engine's directory if needed, durably (its entry in the parent is fsynced)."""
    absolute = os.path.abspath(path)
    if not os.path.isdir(absolute):
        os.makedirs(absolute, exist_ok=True)
        fsync_dir(os.path.dirname(absolute))


def lock_data_dir(path: str) -> int:
    """Take an exclusive lock on the data directory and return its fd (release with `unlock_data_dir`).

    One engine per directory: two engines on the same files would break lmdb's and sqlite's own
    locking assumptions. flock belongs to the open file description, so a second open in the same
    process is refused just like one from another process; the kernel drops it when a process dies.
    """
    try:
        fd = os.open(os.path.join(path, LOCK_FILE_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StorageError("open", e) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise StorageError("open", e, f"{path} is in use by another storage engine") from e
    return fd


def unlock_data_dir(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
