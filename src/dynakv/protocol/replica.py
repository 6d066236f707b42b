"""The replica side of the data path: read the local copy, merge an incoming object into it.

Storage is a synchronous port (ARCHITECTURE.md section 4): a write has returned before any
acknowledgement leaves, so an ack always means the bytes are in the engine (and on disk if durable).
"""

from __future__ import annotations

from dynakv.core.dvv import SiblingSet
from dynakv.core.objects import Content, StoredObject, decode_object, encode_object, last_write_wins
from dynakv.protocol.ports import StorageEngine

EMPTY: StoredObject = SiblingSet[Content]()


def read_local(storage: StorageEngine, partition: int, bucket: bytes, key: bytes) -> StoredObject:
    """The local object, or the empty sibling set. An undecodable stored value raises DecodeError: it
    is local corruption, reported as a storage failure by the caller, never silently treated as absent."""
    data = storage.get(partition, bucket, key)
    return EMPTY if data is None else decode_object(data)


def merge_local(
    storage: StorageEngine,
    partition: int,
    bucket: bytes,
    key: bytes,
    incoming: bytes,
    *,
    durable: bool,
    lww: bool = False,
) -> StoredObject:
    """Merge an encoded object into the local copy (DVV sync) and store the result; return it. With
    `lww` (the bucket's last_write_wins) only the newest sibling of the merge is kept.

    Raises DecodeError for an undecodable incoming or stored object, StorageError from the engine.
    """
    theirs = decode_object(incoming)
    if lww and len(theirs.siblings) > 1:
        theirs = last_write_wins(theirs)
        incoming = encode_object(theirs)
    stored = storage.get(partition, bucket, key)
    if stored is None:
        # Nothing local: the incoming bytes are already the stored form, no re-encoding needed.
        storage.put(partition, bucket, key, incoming, durable=durable)
        return theirs
    ours = decode_object(stored)
    merged = ours.sync(theirs)
    if lww:
        merged = last_write_wins(merged)
    if merged == ours:
        if durable:
            # The copy may have been written buffered before; a durable ack must mean it is on disk.
            storage.put(partition, bucket, key, stored, durable=True)
        return ours
    data = incoming if merged == theirs else encode_object(merged)
    storage.put(partition, bucket, key, data, durable=durable)
    return merged
