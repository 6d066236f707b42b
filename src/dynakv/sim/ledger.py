"""Which dots wrote which value: a record the checkers need and storage alone cannot give.

Every object a simulated node writes to its engine is decoded and each sibling's dot recorded under
(bucket, key, value). A checker then knows every dot that ever carried a value, superseded ones
included. The antichain checker needs it: one client request can be coordinated twice (a forward handed
to another replica after its first coordinator went silent, which then wakes and applies it late), so a
value has twin dots; a later write that read one twin and covers it is still concurrent with the late
one, and that is no lost causality. Simulator only: decoding every write costs time a node must not pay.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from dynakv.core.dvv import Dot
from dynakv.core.errors import DecodeError
from dynakv.core.objects import decode_object
from dynakv.protocol.ports import PutOp, WriteOp
from dynakv.storage.memory import MemoryEngine


class Ledger:
    def __init__(self) -> None:
        self._dots: defaultdict[tuple[bytes, bytes, bytes], set[Dot]] = defaultdict(set)

    def record(self, bucket: bytes, key: bytes, data: bytes) -> None:
        try:
            obj = decode_object(data)
        except DecodeError:
            return  # the checkers decode stored objects themselves and report corruption
        for dot, content in obj.siblings:
            self._dots[(bucket, key, content.value)].add(dot)

    def dots(self, bucket: bytes, key: bytes, value: bytes) -> frozenset[Dot]:
        """Every dot that carried `value` for the key, on any node, at any time."""
        return frozenset(self._dots.get((bucket, key, value), ()))


class LedgerEngine(MemoryEngine):
    """A MemoryEngine that tells the ledger every object it is given."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    def write_batch(self, ops: Sequence[WriteOp], *, durable: bool) -> None:
        super().write_batch(ops, durable=durable)
        for op in ops:
            if isinstance(op, PutOp):
                self.ledger.record(op.bucket, op.key, op.value)
